"""POST /cds-services/{id}: the hook."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from app.engine.engine import Snooze
from app.routes.common import json_body_doc, json_response
from app.routes.dependencies import HookCallDep
from app.routes.errors import ApiError, validated
from app.runtime import Runtime
from app.store.audit import AuditRecord, patient_hash
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
async def call_service(call: HookCallDep) -> Response:
    # The caller proves who it is before the service is looked up, and both before its body is read (HookCallDep).
    runtime, service, data = call.runtime, call.service, call.body
    if _count_resources(data.get("prefetch")) > runtime.settings.max_prefetch_resources:
        raise ApiError(413, "prefetch-too-large",
                       f"more than {runtime.settings.max_prefetch_resources} resources in prefetch")
    hook = validated(HookRequest, data, "invalid-request")
    if hook.hook != service.hook:
        raise ApiError(400, "wrong-hook", f"service {service.id} answers {service.hook!r}, not {hook.hook!r}")
    prefetch = hook.prefetch or {}
    if hook.fhirServer and not runtime.settings.fhir_server_allowed(hook.fhirServer):
        raise ApiError(400, "fhir-server-not-allowed",
                       "fhirServer is not one of the FHIR servers this service is configured to read")
    now = runtime.clock()
    extra, extra_skipped = _extra_resources(prefetch, service.prefetch)
    hashed = patient_hash(hook.patient_id() or "", runtime.settings.audit_salt)
    snoozes = _snoozes(runtime, hashed, now)
    # NoDataError (412) and DraftOrderError (400) are answered by app.routes.errors.
    outcome = await runtime.handler.handle(hook, now, extra=extra, extra_skipped=extra_skipped, snoozes=snoozes)
    # The engine builds cards without empty optional fields (tests check every card), so no prune pass here.
    body = json_response({"cards": outcome.cards}, prune=False)
    duration = (time.perf_counter() - call.started) * 1000
    ev = outcome.evaluation
    runtime.audit.submit(AuditRecord(
        hook_instance=hook.hookInstance, service=service.id,
        patient_hash=hashed, rule_ids=tuple(outcome.rule_ids),
        card_uuids=tuple((f.card["uuid"], f.rule.id) for f in outcome.fired),
        client=call.client,
        card_details=tuple((f.card["uuid"], f.indicator, tuple(s["uuid"] for s in f.card.get("suggestions") or ()))
                           for f in outcome.fired),
        phase=ev.phase.name if ev and ev.facts.in_scope else None, duration_ms=round(duration, 2), status=200,
        problems=len(outcome.problems), created_at=now))
    log.info("hook answered", extra={"service": service.id, "hook_instance": hook.hookInstance[:64],
                                     "rules": outcome.rule_ids, "duration_ms": round(duration, 2),
                                     "problems": len(outcome.problems)})
    return body


def _snoozes(runtime: Runtime, hashed: str, now: datetime) -> list[Snooze]:
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

