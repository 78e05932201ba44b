"""`mbc-cds hook`: fire a hook (patient-view, order-select, order-sign) at a CDS service the way an EHR does:
with fhirServer (and fhirAuthorization), optionally a signed JWT and the prefetch read here from the FHIR
server. Prints the cards; exit 1 with the service's own JSON error when it refuses."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from app.cli.draft_orders import DraftFileError, read_draft_orders
from app.cli.errors import CliError
from app.cli.output import print_json, render_cards_table
from app.cli.parsing import Subcommands
from app.hook_requests import DEFAULT_USER, patient_view_request
from cds_hooks.hooks import ORDER_HOOKS
from cds_hooks.paging import FhirReadError, read_all_pages

READ_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def register(sub: Subcommands) -> None:
    p = sub.add_parser("hook", help="fire a hook (patient-view, order-select, order-sign) at a CDS service",
                       description="Fire patient-view (or order-select / order-sign with --draft) with "
                                   "fhirServer (and fhirAuthorization with --token); with --prefetch, read "
                                   "the discovery prefetch templates from the FHIR server first and send "
                                   "them. Prints the cards.")
    p.add_argument("--service", required=True,
                   help="service URL, e.g. http://127.0.0.1:8080/cds-services/mbc-palliative-care")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL the service (or this tool) reads")
    p.add_argument("--patient", required=True, help="patient id on the FHIR server")
    p.add_argument("--hook", choices=("patient-view", *ORDER_HOOKS), default="patient-view",
                   help="the hook to fire (default patient-view; order hooks need --draft)")
    p.add_argument("--draft", metavar="FILE",
                   help="draft orders for order-select / order-sign: a FHIR Bundle, or one MedicationRequest / "
                        "ServiceRequest, as JSON")
    p.add_argument("--select", action="extend", nargs="+", metavar="REF",
                   help="order-select: the selected drafts, e.g. MedicationRequest/request-123 (default: all)")
    p.add_argument("--prefetch", action="store_true", help="send the prefetch, read here from the FHIR server")
    p.add_argument("--token", help="FHIR bearer token, sent as fhirAuthorization")
    p.add_argument("--user", default=DEFAULT_USER, help=f"context.userId (default {DEFAULT_USER})")
    p.add_argument("--jwt-key", metavar="PEM", help="private key (EC P-384 or RSA) to sign a CDS Hooks JWT")
    p.add_argument("--jwt-iss", metavar="ISS", help="JWT issuer (the service's trusted client iss)")
    p.add_argument("--jwt-kid", metavar="KID", help="JWT key id (kid header)")
    p.add_argument("--json", action="store_true", help="print the response JSON instead of a table")
    p.set_defaults(func=cmd_hook)


@dataclass(frozen=True)
class JwtSigner:
    """Signs CDS Hooks JWTs the way an EHR does: iss, aud (the exact URL called), exp +5 min, iat, jti, kid."""

    key_pem: bytes
    iss: str
    kid: str
    algorithm: str

    @classmethod
    def from_file(cls, path: str, iss: str, kid: str) -> JwtSigner:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            pem = Path(path).read_bytes()
            key = load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise CliError(f"error: cannot read the JWT private key {path!r}: {exc}") from None
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
            alg = "ES384"
        elif isinstance(key, rsa.RSAPrivateKey):
            alg = "RS384"
        else:
            raise CliError("error: the JWT key must be an EC P-384 (ES384) or RSA (RS384) private key in PEM")
        return cls(pem, iss, kid, alg)

    def token(self, audience: str, now: float | None = None) -> str:
        import jwt

        iat = int(now if now is not None else time.time())
        claims = {"iss": self.iss, "aud": audience, "exp": iat + 300, "iat": iat, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key_pem, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})


def _discovery_url(service_url: str) -> tuple[str, str]:
    parts = urlsplit(service_url.rstrip("/"))
    head, _, service_id = parts.path.rpartition("/")
    if not service_id or not head.endswith("/cds-services"):
        raise CliError(f"error: --service must be the service URL, e.g. http://host/cds-services/<id>, "
                       f"not {service_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, head, "", "")), service_id


def _service_headers(signer: JwtSigner | None, url: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if signer is not None:
        headers["Authorization"] = f"Bearer {signer.token(url)}"
    return headers


def build_prefetch(http: httpx.Client, discovery: Mapping[str, Any], service_id: str, request: dict[str, Any],
                   fhir_server: str, token: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Render the service's prefetch templates and read them from the FHIR server, as an EHR would."""
    from cds_hooks.models import HookRequest
    from cds_hooks.prefetch import TemplateError, render_template

    service = next((s for s in discovery.get("services") or [] if s.get("id") == service_id), None)
    if service is None:
        raise CliError(f"error: the discovery document does not list the service {service_id!r}", code=1)
    hook = HookRequest.model_validate(request)
    prefetch: dict[str, Any] = {}
    base = fhir_server.rstrip("/")
    for key, template in (service.get("prefetch") or {}).items():
        try:
            rendered = render_template(template, hook)
        except TemplateError as exc:
            log(f"  prefetch {key}: not rendered ({exc}); the service will read it itself")
            continue
        try:
            value = read_all_pages(http, base, rendered, token)
        except FhirReadError as exc:
            log(f"  prefetch {key}: GET {rendered}: {exc}; left out, the service will read it itself")
            continue
        except (httpx.HTTPError, ValueError) as exc:
            log(f"  prefetch {key}: {exc}; left out, the service will read it itself")
            continue
        count = len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
        log(f"  prefetch {key}: {count} resource(s)")
        prefetch[key] = value
    return prefetch


def fire_hook(service_url: str, fhir_server: str, patient_id: str, *, prefetch: bool = False,
              token: str | None = None, signer: JwtSigner | None = None, user: str = DEFAULT_USER,
              client: httpx.Client | None = None, log: Callable[[str], None] | None = None,
              hook: str = "patient-view", draft_orders: dict[str, Any] | None = None,
              selections: list[str] | None = None) -> httpx.Response:
    """POST a hook (patient-view, or order-select / order-sign with draft orders) to `service_url`; returns the
    service's response (any status)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    service_url = service_url.rstrip("/")
    discovery_url, service_id = _discovery_url(service_url)
    body = patient_view_request(patient_id, fhir_server=fhir_server.rstrip("/"), token=token, user=user,
                                hook=hook, draft_orders=draft_orders, selections=selections)
    own = client is None
    http = client or httpx.Client(timeout=READ_TIMEOUT, follow_redirects=False)
    try:
        if prefetch:
            log(f"GET {discovery_url}")
            resp = http.get(discovery_url, headers=_service_headers(signer, discovery_url))
            if not resp.is_success:
                return resp
            log(f"reading the prefetch templates from {fhir_server.rstrip('/')}")
            body["prefetch"] = build_prefetch(http, resp.json(), service_id, body, fhir_server, token, log)
        log(f"POST {service_url} ({hook}, patient {patient_id}"
            f"{', with prefetch' if prefetch else ', fhirServer only'})")
        return http.post(service_url, content=orjson.dumps(body),
                         headers={**_service_headers(signer, service_url), "Content-Type": "application/json"},
                         timeout=httpx.Timeout(60.0, connect=10.0))
    finally:
        if own:
            http.close()


def cmd_hook(args: argparse.Namespace) -> int:
    jwt_opts = (args.jwt_key, args.jwt_iss, args.jwt_kid)
    signer = None
    if any(jwt_opts):
        if not all(jwt_opts):
            raise CliError("error: --jwt-key, --jwt-iss and --jwt-kid go together")
        signer = JwtSigner.from_file(args.jwt_key, args.jwt_iss, args.jwt_kid)
    t0 = time.perf_counter()
    try:
        drafts = read_draft_orders(args.draft) if args.draft else None
    except DraftFileError as exc:
        raise CliError(f"error: {exc}", code=1) from None
    if args.hook in ORDER_HOOKS and drafts is None:
        raise CliError(f"error: --hook {args.hook} needs --draft FILE (a Bundle of draft orders or one resource)",
                       code=1)
    try:
        resp = fire_hook(args.service, args.fhir_server, args.patient, prefetch=args.prefetch, token=args.token,
                         signer=signer, user=args.user, hook=args.hook, draft_orders=drafts,
                         selections=args.select)
    except httpx.HTTPError as exc:
        raise CliError(f"error: {type(exc).__name__}: {exc}", code=1) from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not resp.is_success or not isinstance(data, dict) or not isinstance(data.get("cards"), list):
        print(f"error: the service answered HTTP {resp.status_code}", file=sys.stderr)
        if data is not None:
            print_json(data)
        else:
            print(resp.text[:2000])
        return 1
    print(f"HTTP {resp.status_code} in {(time.perf_counter() - t0) * 1000:.0f} ms: {len(data['cards'])} card(s)",
          file=sys.stderr)
    if args.json:
        print_json(data)
    else:
        print(render_cards_table(data["cards"]))
    return 0
