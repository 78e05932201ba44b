"""Shared route helpers: JSON errors, bounded body reading, JWT check."""

from __future__ import annotations

import gc
import logging
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from app.jsonlimits import json_depth_exceeds
from app.runtime import Runtime
from app.store.replay import ReplayCacheUnavailable
from cds_hooks.auth import AuthError
from cds_hooks.serialize import dump

log = logging.getLogger("mbc_cds.auth")


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", headers: dict[str, str] | None = None,
                 *, reason: str | None = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.reason = reason  # a fixed category (401: which JWT check failed), never request content


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None, *,
                  prune: bool = True) -> Response:
    """CDS Hooks documents leave out empty optional fields (prune); operational JSON keeps its shape."""
    content = dump(data) if prune else orjson.dumps(data)
    return Response(content=content, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, error: str, detail: str = "", headers: dict[str, str] | None = None,
                   reason: str | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "status": status}
    if reason:
        body["reason"] = reason
    if detail:
        body["detail"] = detail
    return Response(content=orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def json_body_doc(model_name: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself: documents the body as the pydantic model
    registered under components/schemas (see app.main), so integrators and schema-based fuzzers see it."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model_name}"}}}}}


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def require_json_content_type(request: Request) -> None:
    """POST bodies must be declared `application/json`. A `text/plain` (or untyped) POST is a "simple"
    cross-site request that browsers send without a CORS preflight: refusing it means no web page can drive
    the service from a user's browser, whatever the CORS setting."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported-media-type", "the request body must be sent as Content-Type: application/json")


async def read_body(request: Request, limit: int) -> bytes:
    require_json_content_type(request)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, "payload-too-large", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload-too-large", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes, max_depth: int | None = None,
                      skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Parse a JSON object body. orjson itself refuses more than 1024 levels of nesting; `max_depth` sets a
    tighter limit (FHIR resources nest a dozen levels deep, not hundreds)."""
    if not body or body.isspace():
        raise ApiError(400, "malformed-json", "the request body is empty")
    # JSON has no reference cycles, yet the cyclic GC runs repeatedly while a large body allocates millions of
    # objects (1,000 ms vs 150 ms for 15 MB in bench/RESULTS.md): pause it for the parse.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed-json", f"the request body is not valid JSON ({exc.msg})") from None
    finally:
        if gc_was_enabled:
            gc.enable()
    if not isinstance(data, dict):
        raise ApiError(400, "malformed-json", "the request body must be a JSON object")
    if max_depth is not None and json_depth_exceeds(data, max_depth, skip):
        raise ApiError(400, "too-deeply-nested", f"the request body nests JSON deeper than {max_depth} levels")
    return data


def validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)[:300]
    parts = []
    for err in errors()[:5]:  # type: ignore[operator]
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def audience_for(request: Request, runtime: Runtime) -> str:
    """The `aud` a token must name. With JWT on, start-up requires MBC_CDS_PUBLIC_BASE_URL: the request's
    Host and X-Forwarded-* headers are the caller's to choose, so they never decide the audience."""
    base = runtime.settings.public_base_url
    if base:
        return base.rstrip("/") + request.url.path
    if runtime.verifier is not None:
        raise ApiError(503, "misconfigured", "MBC_CDS_PUBLIC_BASE_URL is not set; tokens cannot be checked")
    return str(request.url).split("?", 1)[0]


def client_of(claims: dict[str, Any] | None) -> str:
    """Who the service talks to: the JWT issuer, or the demo client when JWT verification is off."""
    from app.store.feedback import DEMO_CLIENT

    if claims is None:
        return DEMO_CLIENT
    return str(claims.get("iss") or "")[:256]


async def check_jwt(request: Request, runtime: Runtime) -> dict[str, Any] | None:
    """Verify the CDS Client's JWT (CDS Hooks 2.0). Every refusal is a 401 whose body names the failed check
    (`reason`, one of cds_hooks.auth.AUTH_ERROR_CATEGORIES) with a fixed message: no token, key or claim
    values. Only a replay cache the database cannot reach gives 503 (the token itself may be fine)."""
    if runtime.verifier is None:
        return None
    try:
        return await runtime.verifier.verify(request.headers.get("authorization"), audience_for(request, runtime))
    except AuthError as exc:
        log.info("JWT refused", extra={"reason": exc.category})
        raise ApiError(401, "unauthorized", f"{exc.category}: {exc.message}",
                       {"WWW-Authenticate": exc.www_authenticate}, reason=exc.category) from None
    except ReplayCacheUnavailable:
        log.error("JWT replay cache timed out")
        raise ApiError(503, "auth-unavailable", "the JWT replay cache did not answer in time; try again",
                       {"Retry-After": "1"}, reason="replay-cache-timeout") from None
    except SQLAlchemyError:
        log.error("JWT replay cache unavailable")
        raise ApiError(503, "auth-unavailable", "the JWT replay cache could not be reached; try again",
                       {"Retry-After": "1"}, reason="replay-cache-unavailable") from None
