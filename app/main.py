"""FastAPI application: `create_app()` and `app` for uvicorn (`uvicorn app.main:app`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.logging_setup import configure_logging, request_id_var
from app.routes import discovery, feedback, health, knowledge, services
from app.routes.common import ApiError, error_response
from app.runtime import Runtime, build_runtime
from app.settings import Settings, get_settings

log = logging.getLogger("mbc_cds.app")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RequestIdMiddleware:
    """Gives every request an id (X-Request-ID, or a new one) for logs and the response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid if rid and rid.replace("-", "").isalnum() else uuid.uuid4().hex
        token = request_id_var.set(rid)

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "runtime", None) is None:
            app.state.runtime = build_runtime(settings)
        log.info("mbc-cds ready", extra={"rules": len(app.state.runtime.knowledge.rules),
                                         "resource_level": settings.resource_level,
                                         "require_jwt": settings.require_jwt})
        try:
            yield
        finally:
            await app.state.runtime.close()
            app.state.runtime = None

    app = FastAPI(title="mbc-cds", version=__version__, lifespan=lifespan,
                  description="CDS Hooks 2.0 service: palliative and supportive care in metastatic breast cancer.")
    app.state.runtime = runtime
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.error, exc.detail, exc.headers, exc.reason)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "invalid-request", "the request does not match the API")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http-error", str(exc.detail)[:200])

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        # The type only: messages can carry request content.
        log.error("unhandled error", extra={"exc_type": type(exc).__name__})
        return error_response(500, "internal-error", "the service failed; the error was logged")

    for module in (discovery, services, feedback, health, knowledge):
        app.include_router(module.router)
    from app.routes import viewer  # late import: the viewer is optional HTML on top of the API

    app.include_router(viewer.router)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list(), allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type", "X-Request-ID"], max_age=600)
    app.add_middleware(RequestIdMiddleware)
    return app


def _lazy_app() -> FastAPI:
    return create_app()


app = _lazy_app()
