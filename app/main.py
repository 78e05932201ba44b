"""FastAPI application: `create_app()` and `app` for uvicorn (`uvicorn app.main:app`)."""

from __future__ import annotations

import gc
import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.logging_setup import configure_logging, request_id_var
from app.routes import discovery, feedback, health, knowledge, services
from app.routes.errors import error_body, install_error_handlers
from app.runtime import Runtime, build_runtime
from app.service_definition import ORDER_SELECT_ID, ORDER_SIGN_ID, SERVICE_ID
from app.settings import Settings, get_settings
from cds_hooks.models import FeedbackRequest, HookRequest

log = logging.getLogger("mbc_cds.app")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RequestIdMiddleware:
    """Gives every request an id (X-Request-ID, or a new one) for logs and the response header, and answers
    any exception the app lets through with the JSON 500 body. Starlette runs a handler registered for
    `Exception` outside all user middleware, so none is: this middleware catches those exceptions first."""

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

        started = False

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Caught here, not re-raised: the server would log the exception's message, and a message can
            # quote request content (patient data). The type and code location are enough to debug.
            log.error("unhandled error", extra={"exc_type": type(exc).__name__, "where": _where(exc)})
            if not started:
                body = error_body(500, "internal-error", "the service failed; the error was logged")
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            request_id_var.reset(token)


def _where(exc: BaseException) -> list[str]:
    """The innermost frames of a traceback as "file:line in function": no message, no values."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Again here: a server that configured its own loggers after the app was imported (uvicorn.Config with
        # an app object) gets JSON lines too.
        configure_logging(settings.log_level)
        if getattr(app.state, "runtime", None) is None:
            app.state.runtime = build_runtime(settings)
        # Start-up objects (models, knowledge, value sets) live for the process: keep them out of every GC pass.
        gc.collect()
        gc.freeze()
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

    install_error_handlers(app)
    for module in (discovery, services, feedback, health, knowledge):
        app.include_router(module.router)
    from app.routes import viewer  # late import: the viewer is optional HTML on top of the API

    app.include_router(viewer.router)
    _document_request_bodies(app)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list(), allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type", "X-Request-ID"], max_age=600)
    app.add_middleware(RequestIdMiddleware)  # last added, outermost: it sees every request and every error
    return app


_ERROR_SCHEMA = {"type": "object", "required": ["error", "status"], "properties": {
    "error": {"type": "string"}, "status": {"type": "integer"},
    "reason": {"type": "string", "description": "401: the JWT check that failed"},
    "detail": {"type": "string"}}}
_ERROR_TEXT = {"400": "Malformed JSON, wrong hook or an invalid body", "401": "Bad or missing CDS Hooks JWT",
               "404": "Unknown service (feedback: a card not issued by this service to this client)",
               "409": "Feedback: the card already has a different outcome, or the suggestion was not on it",
               "412": "No prefetch data and no fhirServer",
               "413": "Body or prefetch over the limits", "415": "Body not sent as application/json",
               "503": "Storage or replay cache unavailable"}
_ERROR_STATUSES = {"discovery": ("401", "503"), "call_service": ("400", "401", "404", "412", "413", "415", "503"),
                   "post_feedback": ("400", "401", "404", "409", "413", "415", "503"),
                   "get_feedback_report": ("401", "404", "503")}


def _document_request_bodies(app: FastAPI) -> None:
    """The CDS Hooks routes read and validate their bodies themselves (size and depth limits first); the
    OpenAPI document still describes those bodies, as the wire models' JSON schemas."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (HookRequest, FeedbackRequest):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in model_schema.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components[model.__name__] = model_schema
        # Formats the models check in validators, stated for integrators (and schema-driven fuzzers).
        components["FeedbackItem"]["properties"]["outcomeTimestamp"]["format"] = "date-time"
        components["FeedbackItem"]["if"] = {"properties": {"outcome": {"const": "accepted"}}}
        components["FeedbackItem"]["then"] = {"required": ["acceptedSuggestions"], "properties": {
            "acceptedSuggestions": {"type": "array", "minItems": 1}}}
        components["FhirAuthorization"]["properties"]["access_token"]["pattern"] = r"\S"
        components["HookRequest"]["properties"]["fhirServer"] = {
            "anyOf": [{"type": "string", "format": "uri", "pattern": "^https?://[^/]"}, {"type": "null"}]}
        # The services answer patient-view, order-select and order-sign; every context names the patient, and
        # the order hooks carry their draft orders (a FHIR Bundle).
        hook_props = components["HookRequest"]["properties"]
        hook_props["hook"] = {**hook_props["hook"], "enum": ["patient-view", "order-select", "order-sign"]}
        hook_props["context"] = {**hook_props["context"], "required": ["patientId"],
                                 "properties": {"patientId": {"type": "string", "minLength": 1},
                                                "userId": {"type": "string"},
                                                "encounterId": {"type": "string"},
                                                "selections": {"type": "array", "items": {
                                                    "type": "string", "pattern": _SELECTION_PATTERN}},
                                                "draftOrders": {"type": "object", "required": ["resourceType"],
                                                                "properties": {"resourceType": {"const": "Bundle"}}}}}
        # Errors are {"error", "status", "reason"?, "detail"?} with 400 for anything malformed: never a 422.
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Error"] = _ERROR_SCHEMA
        enums = {"service_id": [SERVICE_ID, ORDER_SELECT_ID, ORDER_SIGN_ID], "rtype": list(knowledge.TYPES)}
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                for param in op.get("parameters", []):
                    if param.get("in") == "path" and param.get("name") in enums:
                        param["schema"] = {**param.get("schema", {}), "enum": enums[param["name"]]}
                responses = op.get("responses", {})
                had_422 = responses.pop("422", None) is not None
                errors = _ERROR_STATUSES.get(op.get("operationId", "").split("_cds_services")[0], ())
                for status in ({"400"} if had_422 else set()) | set(errors):
                    responses.setdefault(status, {"description": _ERROR_TEXT[status], "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


_SELECTION_PATTERN = r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$"


def _lazy_app() -> FastAPI:
    return create_app()


app = _lazy_app()
