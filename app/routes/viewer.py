"""The card viewer (`GET /`, `/viewer`, its static files) and the demo helpers behind it.

`/demo/samples` and `/demo/request/{id}` hand out synthetic sample patients and ready-made patient-view
requests; `/demo/drafts` and `/demo/order-request/{id}?draft=...` sample draft orders and order-sign requests.
They answer only when JWT verification is off (`MBC_CDS_REQUIRE_JWT=false`, the demo and the tests); on a
deployment that verifies EHR tokens they are 404, and the viewer page says it needs demo mode.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.routes.common import ApiError, json_response, runtime_of
from app.service_definition import ORDER_SIGN_ID, SERVICE_ID

router = APIRouter()

_STATIC = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}
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


def _require_demo_mode(request: Request) -> None:
    if request.app.state.settings.require_jwt:
        raise ApiError(404, "demo-mode-off",
                       "the demo routes exist only with JWT verification off (MBC_CDS_REQUIRE_JWT=false, "
                       "e.g. `mbc-cds demo`)")


def _samples() -> Any:
    try:
        from app import samples
    except ImportError:
        raise ApiError(404, "no-samples", "the sample patients are not installed") from None
    return samples


@router.get("/demo/samples", summary="Sample patients (demo mode only)", tags=["viewer"])
async def demo_samples(request: Request) -> Response:
    _require_demo_mode(request)
    items = [{"id": s["id"], "title": s.get("title", ""), "description": s.get("description", "")}
             for s in _samples().list_samples()]
    return json_response({"samples": items, "service": SERVICE_ID})


@router.get("/demo/request/{sample_id}", summary="A patient-view request for a sample (demo mode only)",
            tags=["viewer"])
async def demo_request(sample_id: str, request: Request) -> Response:
    from app.integrator import demo_request_for_bundle

    _require_demo_mode(request)
    samples = _samples()
    if sample_id not in {s["id"] for s in samples.list_samples()}:
        raise ApiError(404, "unknown-sample", f"no sample patient {sample_id[:64]!r}; see GET /demo/samples")
    runtime = runtime_of(request)
    bundle = samples.sample_bundle(sample_id, now=runtime.clock())
    body = demo_request_for_bundle(bundle, runtime.services[SERVICE_ID].prefetch)
    # Not json_response: that drops nulls and empty lists, and a null prefetch key means "no data".
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/demo/drafts", summary="Sample draft orders for order-select / order-sign (demo mode only)",
            tags=["viewer"])
async def demo_drafts(request: Request) -> Response:
    _require_demo_mode(request)
    return json_response({"drafts": _samples().list_drafts(), "service": ORDER_SIGN_ID})


@router.get("/demo/order-request/{sample_id}", summary="An order-sign request: a sample patient with a sample "
            "draft order (demo mode only)", tags=["viewer"])
async def demo_order_request(sample_id: str, draft: str, request: Request) -> Response:
    from app.integrator import bundle_resources, patient_id_of, patient_view_request, prefetch_from_resources

    _require_demo_mode(request)
    samples = _samples()
    if sample_id not in {s["id"] for s in samples.list_samples()}:
        raise ApiError(404, "unknown-sample", f"no sample patient {sample_id[:64]!r}; see GET /demo/samples")
    runtime = runtime_of(request)
    resources = bundle_resources(samples.sample_bundle(sample_id, now=runtime.clock()))
    pid = patient_id_of(resources)
    try:
        drafts = samples.draft_orders(draft, pid, now=runtime.clock())
    except KeyError:
        raise ApiError(404, "unknown-draft", f"no sample draft {draft[:64]!r}; see GET /demo/drafts") from None
    body = patient_view_request(pid, hook="order-sign", draft_orders=drafts, prefetch=prefetch_from_resources(
        resources, runtime.services[ORDER_SIGN_ID].prefetch, pid))
    return Response(orjson.dumps(body), media_type="application/json")
