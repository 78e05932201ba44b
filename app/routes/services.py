"""POST /cds-services/{id}: the hook."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.engine.engine import Snooze
from app.hook import NoDataError
from app.routes.common import (
    ApiError,
    check_jwt,
    client_of,
    json_body_doc,
    json_response,
    parse_json_object,
    read_body,
    runtime_of,
)
from app.store.audit import AuditRecord, patient_hash
from cds_hooks.draft_orders import DraftOrderError
from cds_hooks.fallback import split_resources
from cds_hooks.models import HookRequest

router = APIRouter()
log = logging.getLogger("mbc_cds.hook")


def _count_resources(prefetch: Any) -> int:
    """Resources (Bundle entries, or 1 per single resource) over all prefetch values, whatever their shape."""
    if not isinstance(prefetch, dict):
        return 0
    total = 0
    for value in prefetch.values():
        if isinstance(value, dict):
            entries = value.get("entry")
            total += len(entries) if isinstance(entries, list) else 1
        elif isinstance(value, list):
            total += len(value)
    return total


@router.post("/cds-services/{service_id}", summary="Call a CDS service (patient-view, order-select, order-sign)",
             tags=["cds-hooks"],
             openapi_extra=json_body_doc("HookRequest"))
async def call_service(service_id: str, request: Request) -> Response:
    started = time.perf_counter()
    runtime = runtime_of(request)
    # The caller proves who it is before anything else is looked at (and before its body is read).
    claims = await check_jwt(request, runtime)
    service = runtime.services.get(service_id)
    if service is None:
        raise ApiError(404, "unknown-service", f"no CDS service {service_id[:64]!r}; see GET /cds-services")
    # The prefetch is not walked for depth: it can hold tens of thousands of resources, the engine reads them
    # at fixed paths without recursion, and orjson already refuses more than 1024 levels.
    data = parse_json_object(await read_body(request, runtime.settings.max_body_bytes),
                             runtime.settings.max_json_depth, skip=frozenset({"prefetch"}))
    if _count_resources(data.get("prefetch")) > runtime.settings.max_prefetch_resources:
        raise ApiError(413, "prefetch-too-large",
                       f"more than {runtime.settings.max_prefetch_resources} resources in prefetch")
    try:
        hook = HookRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid-request", _message(exc)) from None
    if hook.hook != service.hook:
        raise ApiError(400, "wrong-hook", f"service {service_id} answers {service.hook!r}, not {hook.hook!r}")
    prefetch = hook.prefetch or {}
    if hook.fhirServer and not runtime.settings.fhir_server_allowed(hook.fhirServer):
        raise ApiError(400, "fhir-server-not-allowed",
                       "fhirServer is not one of the FHIR servers this service is configured to read")
    if not hook.fhirServer and not prefetch:
        raise ApiError(412, "no-data", "no prefetch data and no fhirServer to read the patient's record from")
    now = runtime.clock()
    extra, extra_skipped = _extra_resources(prefetch, service.prefetch)
    hashed = patient_hash(hook.patient_id() or "", runtime.settings.audit_salt)
    snoozes = _snoozes(runtime, hashed, now)
    try:
        outcome = await runtime.processor.run(hook, now, extra=extra, extra_skipped=extra_skipped, snoozes=snoozes)
    except NoDataError as exc:
        raise ApiError(412, "no-data", str(exc)) from None
    except DraftOrderError as exc:
        raise ApiError(400, "invalid-draft-orders", str(exc)) from None
    # The engine builds cards without empty optional fields (tests check every card), so no prune pass here.
    body = json_response({"cards": outcome.cards}, prune=False)
    duration = (time.perf_counter() - started) * 1000
    ev = outcome.evaluation
    runtime.audit.submit(AuditRecord(
        hook_instance=hook.hookInstance, service=service_id,
        patient_hash=hashed, rule_ids=tuple(outcome.rule_ids),
        card_uuids=tuple((f.card["uuid"], f.rule.id) for f in outcome.fired),
        client=client_of(claims),
        card_details=tuple((f.card["uuid"], f.indicator, tuple(s["uuid"] for s in f.card.get("suggestions") or ()))
                           for f in outcome.fired),
        phase=ev.phase.name if ev and ev.facts.in_scope else None, duration_ms=round(duration, 2), status=200,
        problems=len(outcome.problems), created_at=now))
    log.info("hook answered", extra={"service": service_id, "hook_instance": hook.hookInstance[:64],
                                     "rules": outcome.rule_ids, "duration_ms": round(duration, 2),
                                     "problems": len(outcome.problems)})
    return body


def _snoozes(runtime: Any, hashed: str, now: Any) -> list[Snooze]:
    """The rules snoozed for this patient by earlier overrides, from the worker's index (app/store/snoozes.py).
    A database fault shows every card (safe)."""
    rows = runtime.snoozes.active(hashed, now)
    if rows is None:
        log.warning("snoozes could not be read; no rule is snoozed for this hook")
        return []
    return [Snooze(rule_id, reason, until) for rule_id, reason, until in rows]


def _extra_resources(prefetch: dict[str, Any], templates: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Resources under prefetch keys this service did not ask for (EHRs sometimes send one big bundle), and
    the number of Bundle entries among them that held no resource."""
    extra: list[dict[str, Any]] = []
    skipped = 0
    for key, value in prefetch.items():
        if key not in templates and isinstance(value, dict) and isinstance(value.get("resourceType"), str) \
                and value.get("resourceType") != "OperationOutcome":
            found, n = split_resources(value)
            extra.extend(found)
            skipped += n
    return extra, skipped


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
