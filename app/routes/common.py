"""Shared route helpers: JSON errors, bounded body reading, JWT check."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from app.runtime import Runtime
from cds_hooks.auth import AuthError
from cds_hooks.serialize import dump


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None, *,
                  prune: bool = True) -> Response:
    """CDS Hooks documents leave out empty optional fields (prune); operational JSON keeps its shape."""
    content = dump(data) if prune else orjson.dumps(data)
    return Response(content=content, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, error: str, detail: str = "", headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "status": status}
    if detail:
        body["detail"] = detail
    return Response(content=orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def read_body(request: Request, limit: int) -> bytes:
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


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, "malformed-json", "the request body is empty")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed-json", f"the request body is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed-json", "the request body must be a JSON object")
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
    base = runtime.settings.public_base_url
    if base:
        return base.rstrip("/") + request.url.path
    return str(request.url).split("?", 1)[0]


async def check_jwt(request: Request, runtime: Runtime) -> dict[str, Any] | None:
    if runtime.verifier is None:
        return None
    try:
        return await runtime.verifier.verify(request.headers.get("authorization"), audience_for(request, runtime))
    except AuthError as exc:
        raise ApiError(401, "unauthorized", f"{exc.category}: {exc.message}",
                       {"WWW-Authenticate": exc.www_authenticate}) from None
