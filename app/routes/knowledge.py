"""Read-only FHIR view of the knowledge: PlanDefinition, ActivityDefinition, Library, CodeSystem, ValueSet."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.routes.common import json_response
from app.routes.dependencies import RuntimeDep
from app.runtime import Runtime
from cds_hooks.paging import FHIR_JSON

router = APIRouter()
TYPES = ("PlanDefinition", "ActivityDefinition", "Library", "CodeSystem", "ValueSet")


def _resources(runtime: Runtime, rtype: str) -> list[dict[str, Any]]:
    if rtype == "ValueSet":
        return runtime.terminology.all_valuesets()
    return runtime.knowledge.artifacts.of(rtype)


def _outcome(status: int, code: str, text: str) -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    resp = json_response(body, status=status)
    resp.headers["content-type"] = FHIR_JSON
    return resp


# The FHIR search parameters stay out of the OpenAPI document, as when they were read by hand: its parameters are
# part of the checked contract (tests/test_routes_dependencies.py).
@router.get("/fhir/{rtype}", summary="Search knowledge artifacts", tags=["knowledge"])
async def search(rtype: str, request: Request, runtime: RuntimeDep,
                 url: Annotated[str | None, Query(include_in_schema=False)] = None,
                 id_: Annotated[str | None, Query(alias="_id", include_in_schema=False)] = None) -> Response:
    if rtype not in TYPES:
        return _outcome(404, "not-supported", f"resource type {rtype[:40]!r} is not served here")
    items = _resources(runtime, rtype)
    if url is not None:
        items = [r for r in items if r.get("url") == url]
    if id_ is not None:
        items = [r for r in items if r.get("id") == id_]
    # The configured public URL, not the request's Host (which the caller chooses): a cached or forwarded
    # Bundle must not point readers at a host an attacker named.
    public = runtime.settings.public_base_url
    base = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
              "entry": [{"fullUrl": f"{base}/fhir/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                        for r in items]}
    resp = json_response(bundle)
    resp.headers["content-type"] = FHIR_JSON
    return resp


@router.get("/fhir/{rtype}/{rid}", summary="Read one knowledge artifact", tags=["knowledge"])
async def read(rtype: str, rid: str, runtime: RuntimeDep) -> Response:
    if rtype not in TYPES:
        return _outcome(404, "not-supported", f"resource type {rtype[:40]!r} is not served here")
    for r in _resources(runtime, rtype):
        if r.get("id") == rid:
            resp = json_response(r)
            resp.headers["content-type"] = FHIR_JSON
            return resp
    return _outcome(404, "not-found", f"{rtype}/{rid[:64]} not found")
