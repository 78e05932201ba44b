"""Start-up refusal of an unsafe production configuration: one clear message listing every problem.

"Production" is JWT on. Demo mode (JWT off) is already loud about trusting every caller (app/runtime.py).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from app.settings import Settings
from cds_hooks.auth import TrustedClient
from cds_hooks.jwks_fetch import MIN_RSA_BITS, rsa_key_bits
from cds_hooks.urlpolicy import UrlRefused, is_loopback_host, normalise

log = logging.getLogger("mbc_cds.runtime")


class UnsafeConfiguration(RuntimeError):
    """The service refuses to start; the message names each setting to fix."""


def configuration_problems(settings: Settings, clients: list[TrustedClient]) -> list[str]:
    problems: list[str] = []
    for item in (p.strip() for p in settings.allowed_fhir_servers.split(",")):
        if item and item != "*":
            try:
                normalise(item)
            except UrlRefused as exc:
                problems.append(f"MBC_CDS_ALLOWED_FHIR_SERVERS entry {item[:80]!r}: {exc}")
    if settings.public_base_url:
        base = urlsplit(settings.public_base_url)
        if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
            problems.append("MBC_CDS_PUBLIC_BASE_URL must be an absolute http(s) URL without query or fragment")
    if not settings.require_jwt:
        return problems
    if not settings.public_base_url:
        problems.append("MBC_CDS_PUBLIC_BASE_URL is not set: with JWT on, the expected `aud` must not come from "
                        "the request's Host header (set it to the URL EHRs call, e.g. https://cds.example.org)")
    if not settings.allowed_fhir_servers.strip():
        problems.append("MBC_CDS_ALLOWED_FHIR_SERVERS is not set: with JWT on, list the FHIR server URLs the "
                        "service may read (comma-separated prefixes), or `*` to allow any")
    for client in clients:
        problems.extend(_client_problems(client))
    return problems


def _client_problems(client: TrustedClient) -> list[str]:
    out: list[str] = []
    where = f"trusted client {client.iss!r}"
    if client.jwks_url is not None:
        parts = urlsplit(client.jwks_url)
        if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
            out.append(f"{where}: jwks_url must be https (http is accepted for loopback test hosts only)")
    for i, key in enumerate((client.jwks or {}).get("keys", [])):
        bits = rsa_key_bits(key) if isinstance(key, dict) else None
        if bits is not None and bits < MIN_RSA_BITS:
            out.append(f"{where}: jwks.keys[{i}] is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are needed")
    return out


def check_configuration(settings: Settings, clients: list[TrustedClient]) -> None:
    problems = configuration_problems(settings, clients)
    if problems:
        raise UnsafeConfiguration("mbc-cds refuses to start, unsafe configuration:\n  - " + "\n  - ".join(problems))
    if settings.require_jwt and "*" in [p.strip() for p in settings.allowed_fhir_servers.split(",")]:
        log.warning("MBC_CDS_ALLOWED_FHIR_SERVERS is `*`: any FHIR server the EHR names is read with its token "
                    "(loopback and link-local addresses excepted); list the servers instead")
