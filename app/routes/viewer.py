"""The card viewer (`GET /`, `/viewer`, its static files) and the demo helpers behind it.

`/demo/samples` and `/demo/request/{id}` hand out synthetic sample patients and ready-made patient-view
requests; `/demo/drafts` and `/demo/order-request/{id}?draft=...` sample draft orders and order-sign requests;
`/demo/timeline` and `/demo/timeline.svg` turn a patient-view request into the patient's timeline, built from the
facts the rules read for that request. They answer only when JWT verification is off (`MBC_CDS_REQUIRE_JWT=false`,
the demo and the tests); on a deployment that verifies EHR tokens they are 404, and the viewer page says it needs
demo mode.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.clinical.timeline import build_timeline
from app.routes.common import json_response
from app.routes.dependencies import HookBody, RuntimeDep, runtime_of
from app.routes.errors import ApiError, validated
from app.runtime import Runtime
from app.service_definition import ORDER_SIGN_ID, SERVICE_ID
from app.timeline_svg import render_timeline_svg
from cds_hooks.models import HookRequest

router = APIRouter()

_STATIC = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8",
           "favicon.svg": "image/svg+xml"}
# Everything the page loads is same-origin; no inline script or style, no frames.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _static_bytes(name: str) -> bytes:
    return resources.files("app").joinpath("static", name).read_bytes()


@router.get("/", include_in_schema=False)
@router.get("/viewer", summary="Card viewer (HTML)", tags=["viewer"])
async def viewer_page() -> Response:
    return Response(_static_bytes("viewer.html"), media_type="text/html; charset=utf-8",
                    headers=_SECURITY_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    media_type = _STATIC.get(name)
    if media_type is None:
        raise ApiError(404, "not-found", "no such file")
    return Response(_static_bytes(name), media_type=media_type, headers=_SECURITY_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    # Browsers ask for /favicon.ico whatever the page links; an SVG answers both.
    return Response(_static_bytes("favicon.svg"), media_type="image/svg+xml", headers=_SECURITY_HEADERS)


async def _require_demo_mode(request: Request) -> None:
    if runtime_of(request).settings.require_jwt:
        raise ApiError(404, "demo-mode-off",
                       "the demo routes exist only with JWT verification off (MBC_CDS_REQUIRE_JWT=false, "
                       "e.g. `mbc-cds demo`)")


def _samples() -> Any:
    try:
        from app import samples
    except ImportError:
        raise ApiError(404, "no-samples", "the sample patients are not installed") from None
    return samples


# Route dependencies run before the parameters are read: off demo mode, every demo route is a 404.
_DEMO_ONLY = [Depends(_require_demo_mode)]


@router.get("/demo/samples", summary="Sample patients (demo mode only)", tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_samples() -> Response:
    items = [{"id": s["id"], "title": s.get("title", ""), "description": s.get("description", "")}
             for s in _samples().list_samples()]
    return json_response({"samples": items, "service": SERVICE_ID})


@router.get("/demo/request/{sample_id}", summary="A patient-view request for a sample (demo mode only)",
            tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_request(sample_id: str, runtime: RuntimeDep) -> Response:
    from app.hook_requests import demo_request_for_bundle

    samples = _samples()
    if sample_id not in {s["id"] for s in samples.list_samples()}:
        raise ApiError(404, "unknown-sample", f"no sample patient {sample_id[:64]!r}; see GET /demo/samples")
    bundle = samples.sample_bundle(sample_id, now=runtime.clock())
    body = demo_request_for_bundle(bundle, runtime.services[SERVICE_ID].prefetch)
    # Not json_response: that drops nulls and empty lists, and a null prefetch key means "no data".
    return Response(orjson.dumps(body), media_type="application/json")


async def _timeline_of(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    hook = validated(HookRequest, data, "invalid-request")
    if not hook.prefetch:
        raise ApiError(412, "no-data", "the timeline is drawn from the request's prefetch; it has none")
    # Only what the request carries: the timeline endpoint never reads a FHIR server.
    hook = hook.model_copy(update={"fhirServer": None, "fhirAuthorization": None})
    outcome = await runtime.handler.handle(hook, runtime.clock())
    return build_timeline(outcome.evaluation.facts)


@router.post("/demo/timeline", summary="The patient's timeline as JSON, from a patient-view request (demo mode only)",
             tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_timeline(runtime: RuntimeDep, data: HookBody) -> Response:
    return json_response(await _timeline_of(runtime, data), prune=False)


@router.post("/demo/timeline.svg", summary="The patient's timeline as SVG, from a patient-view request "
             "(demo mode only)", tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_timeline_svg(runtime: RuntimeDep, data: HookBody) -> Response:
    svg = render_timeline_svg(await _timeline_of(runtime, data), link_base="#")
    return Response(svg, media_type="image/svg+xml", headers=_SECURITY_HEADERS)


@router.get("/demo/drafts", summary="Sample draft orders for order-select / order-sign (demo mode only)",
            tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_drafts() -> Response:
    return json_response({"drafts": _samples().list_drafts(), "service": ORDER_SIGN_ID})


@router.get("/demo/order-request/{sample_id}", summary="An order-sign request: a sample patient with a sample "
            "draft order (demo mode only)", tags=["viewer"], dependencies=_DEMO_ONLY)
async def demo_order_request(sample_id: str, draft: str, runtime: RuntimeDep) -> Response:
    from app.bundles import bundle_resources, patient_id_of
    from app.hook_requests import patient_view_request, prefetch_from_resources

    samples = _samples()
    if sample_id not in {s["id"] for s in samples.list_samples()}:
        raise ApiError(404, "unknown-sample", f"no sample patient {sample_id[:64]!r}; see GET /demo/samples")
    resources = bundle_resources(samples.sample_bundle(sample_id, now=runtime.clock()))
    pid = patient_id_of(resources)
    try:
        drafts = samples.draft_orders(draft, pid, now=runtime.clock())
    except KeyError:
        raise ApiError(404, "unknown-draft", f"no sample draft {draft[:64]!r}; see GET /demo/drafts") from None
    body = patient_view_request(pid, hook="order-sign", draft_orders=drafts, prefetch=prefetch_from_resources(
        resources, runtime.services[ORDER_SIGN_ID].prefetch, pid))
    return Response(orjson.dumps(body), media_type="application/json")
