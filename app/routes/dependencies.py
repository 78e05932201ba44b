"""FastAPI dependencies of the routes: the runtime, the verified caller, the called service, the bounded JSON body.

A route lists them in the order they must be checked, and FastAPI resolves them in that order (the route's
`dependencies=[...]`, then its parameters) before the handler runs: the caller's JWT first (401 / 503), then the
service named in the path (404), then the body (415, 413, 400). So a caller that cannot prove who it is never gets
its body read. They read headers and body from the `Request` itself, never through `Header(...)` or body
parameters, so they add nothing to the OpenAPI document.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from app.jsonlimits import json_depth_exceeds
from app.routes.errors import ApiError
from app.runtime import Runtime
from app.settings import Settings
from app.store.feedback import DEMO_CLIENT
from app.store.replay import ReplayCacheUnavailable
from cds_hooks.auth import AuthError
from cds_hooks.discovery import ServiceDefinition

log = logging.getLogger("mbc_cds.auth")

# Cost per request, measured (FastAPI 0.165): every dependency is `async def`, as FastAPI runs a plain `def` one in a
# worker thread; and none nests another, as FastAPI solves each dependency's own dependencies again on every
# request, cached or not (~8 us each): they call `runtime_of` rather than depend on RuntimeDep. The hook route,
# the one on every chart opening, takes its four as one (`HookCallDep`: ~30 us less per hook than five).


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


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
    if claims is None:
        return DEMO_CLIENT
    return str(claims.get("iss") or "")[:256]


async def verified_client(request: Request) -> str:
    """Verify the CDS Client's JWT (CDS Hooks 2.0) and name the client. Every refusal is a 401 whose body names
    the failed check (`reason`, one of cds_hooks.auth.AUTH_ERROR_CATEGORIES) with a fixed message: no token,
    key or claim values. Only a replay cache the database cannot reach gives 503 (the token itself may be fine)."""
    runtime = runtime_of(request)
    if runtime.verifier is None:
        return client_of(None)
    try:
        claims = await runtime.verifier.verify(request.headers.get("authorization"), audience_for(request, runtime))
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
    return client_of(claims)


ClientDep = Annotated[str, Depends(verified_client)]


async def called_service(service_id: str, request: Request) -> ServiceDefinition:
    service = runtime_of(request).services.get(service_id)
    if service is None:
        raise ApiError(404, "unknown-service", f"no CDS service {service_id[:64]!r}; see GET /cds-services")
    return service


ServiceDep = Annotated[ServiceDefinition, Depends(called_service)]


def require_json_content_type(request: Request) -> None:
    """POST bodies must be declared `application/json`. A `text/plain` (or untyped) POST is a "simple"
    cross-site request that browsers send without a CORS preflight: refusing it means no web page can drive
    the service from a user's browser, whatever the CORS setting."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported-media-type", "the request body must be sent as Content-Type: application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to be over `limit`: from Content-Length when sent, else
    while streaming, so an oversized body is never held in memory whole."""
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


def bounded_json_body(max_bytes: Callable[[Settings], int], skip: frozenset[str] = frozenset()
                      ) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A dependency giving the request body as a JSON object: declared `application/json` (415), at most
    `max_bytes(settings)` bytes (413), valid JSON (400) nesting at most `settings.max_json_depth` levels outside
    the top-level keys in `skip` (400)."""
    async def json_body(request: Request) -> dict[str, Any]:
        settings = runtime_of(request).settings
        return parse_json_object(await read_body(request, max_bytes(settings)), settings.max_json_depth, skip)

    return json_body


# The prefetch is not walked for depth: it can hold tens of thousands of resources, the engine reads them at fixed
# paths without recursion, and orjson already refuses more than 1024 levels.
_hook_json_body = bounded_json_body(lambda settings: settings.max_body_bytes, skip=frozenset({"prefetch"}))
HookBody = Annotated[dict[str, Any], Depends(_hook_json_body)]
@dataclass(frozen=True, slots=True)
class HookCall:
    """What the hook route needs before it runs, checked in the order of the module docstring."""

    started: float           # perf_counter at the first check: the hook's duration counts the JWT and body read
    runtime: Runtime
    client: str
    service: ServiceDefinition
    body: dict[str, Any]


async def hook_call(service_id: str, request: Request) -> HookCall:
    """The hook route's dependencies as one: the verified caller (401 / 503), then the called service (404), then
    the bounded JSON body (415 / 413 / 400), by the same functions the other routes depend on one by one."""
    started = time.perf_counter()
    client = await verified_client(request)
    service = await called_service(service_id, request)
    body = await _hook_json_body(request)
    return HookCall(started, runtime_of(request), client, service, body)


HookCallDep = Annotated[HookCall, Depends(hook_call)]
# Feedback is a few cards' outcomes (at most FeedbackRequest's item cap): a megabyte is generous.
FeedbackBody = Annotated[dict[str, Any], Depends(bounded_json_body(lambda settings: 1024 * 1024))]

