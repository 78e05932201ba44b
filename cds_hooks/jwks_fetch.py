"""Fetching an issuer's JWK Set without letting its host hold the service.

- one overall deadline for the whole fetch: httpx's read timeout restarts with every byte, so a host that
  trickles one byte every two seconds would otherwise hold the request (and the issuer's lock) for minutes;
- the body is streamed and refused past `max_bytes`, before it is all in memory;
- `Accept-Encoding: identity`, and any other `Content-Encoding` is refused: 64 KiB of gzip inflates to
  hundreds of megabytes, and the size check must see the bytes that are parsed;
- its own httpx client (`jwks_client`), so key fetches never wait behind FHIR reads, nor FHIR reads behind
  them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

__all__ = ["DEFAULT_MAX_JWKS_BYTES", "JwksFetchError", "fetch_jwks", "jwks_client", "rsa_key_bits"]

DEFAULT_MAX_JWKS_BYTES = 512 * 1024
MIN_RSA_BITS = 2048
_HEADERS = {"Accept": "application/jwk-set+json, application/json", "Accept-Encoding": "identity"}


class JwksFetchError(Exception):
    """Why a fetch failed, as a fixed text safe to log."""


def jwks_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False,
                             limits=httpx.Limits(max_connections=20, max_keepalive_connections=5))


async def fetch_jwks(client: httpx.AsyncClient, url: str, *, deadline: float,
                     max_bytes: int = DEFAULT_MAX_JWKS_BYTES) -> dict[str, Any]:
    """The JWK Set at `url` as a dict with a `keys` list, or JwksFetchError."""
    try:
        async with asyncio.timeout(deadline):
            body = await _read(client, url, max_bytes)
    except TimeoutError:
        raise JwksFetchError(f"no complete answer within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise JwksFetchError(type(exc).__name__) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise JwksFetchError("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksFetchError("not a JWK Set")
    return data


async def _read(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    async with client.stream("GET", url, headers=_HEADERS, follow_redirects=False) as response:
        if response.status_code != 200:
            raise JwksFetchError(f"HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise JwksFetchError("compressed response refused")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise JwksFetchError("response too large")
        buf = bytearray()
        # No Content-Encoding got this far, so these are the bytes on the wire: nothing was inflated.
        async for chunk in response.aiter_bytes():
            buf += chunk
            if len(buf) > max_bytes:
                raise JwksFetchError("response too large")
        return bytes(buf)


def rsa_key_bits(jwk: dict[str, Any]) -> int | None:
    """The modulus size of an RSA JWK in bits; None when it is not an RSA key with a readable `n`."""
    if jwk.get("kty") != "RSA" or not isinstance(jwk.get("n"), str):
        return None
    n = jwk["n"]
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return None
    return int.from_bytes(raw, "big").bit_length()
