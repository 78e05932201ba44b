"""The API's one error format, `{"error", "status", "reason"?, "detail"?}`, and the handlers that answer with it.

Unexpected exceptions are not handled here: `app.main.RequestIdMiddleware` turns them into the 500 body, and
being the outermost middleware it sees them before any handler registered for `Exception` could."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.service.handle import NoDataError
from cds_hooks.draft_orders import DraftOrderError

Model = TypeVar("Model", bound=BaseModel)

# Enough to fix a request; a hostile body with thousands of faults must not get a reply as large as itself.
_MAX_REPORTED_ERRORS = 5


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", headers: dict[str, str] | None = None,
                 *, reason: str | None = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.reason = reason  # a fixed category (401: which JWT check failed), never request content


def error_body(status: int, error: str, detail: str = "", reason: str | None = None) -> bytes:
    body: dict[str, Any] = {"error": error, "status": status}
    if reason:
        body["reason"] = reason
    if detail:
        body["detail"] = detail
    return orjson.dumps(body)


def error_response(status: int, error: str, detail: str = "", headers: dict[str, str] | None = None,
                   reason: str | None = None) -> Response:
    return Response(content=error_body(status, error, detail, reason), status_code=status,
                    media_type="application/json", headers=headers)


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic errors as `location: message; ...`: where the request is wrong and what was expected."""
    parts = []
    for err in errors[:_MAX_REPORTED_ERRORS]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def validated(model: type[Model], data: dict[str, Any], error: str) -> Model:
    """`data` as `model`, or a 400 named `error` that says what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, error, validation_detail(exc.errors())) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.error, exc.detail, exc.headers, exc.reason)

    # What the service layer refuses, wherever a route called it from.
    @app.exception_handler(NoDataError)
    async def _no_data(_: Request, exc: NoDataError) -> Response:
        return error_response(412, "no-data", str(exc))

    @app.exception_handler(DraftOrderError)
    async def _draft_orders(_: Request, exc: DraftOrderError) -> Response:
        return error_response(400, "invalid-draft-orders", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        # A path or query parameter (the routes read their bodies themselves): 400, never FastAPI's 422.
        return error_response(400, "invalid-request", validation_detail(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http-error", str(exc.detail)[:200])
