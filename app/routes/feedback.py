"""POST /cds-services/{id}/feedback and a small read-back report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from app.routes.common import json_body_doc, json_response
from app.routes.dependencies import ClientDep, FeedbackBody, RuntimeDep, ServiceDep, verified_client
from app.routes.errors import ApiError, validated
from app.runtime import Runtime
from app.store.feedback import (
    FeedbackEntry,
    FeedbackRefused,
    FeedbackResult,
    feedback_report,
    snooze_report,
    store_feedback,
)
from cds_hooks.models import FeedbackRequest

router = APIRouter()


@router.post("/cds-services/{service_id}/feedback", summary="CDS Hooks feedback", tags=["cds-hooks"],
             openapi_extra=json_body_doc("FeedbackRequest"))
async def post_feedback(runtime: RuntimeDep, client: ClientDep, service: ServiceDep, data: FeedbackBody) -> Response:
    fb = validated(FeedbackRequest, data, "invalid-feedback")
    entries = []
    for item in fb.feedback:
        reason = item.overrideReason.reason if item.overrideReason else None
        entries.append(FeedbackEntry(
            card_uuid=item.card[:64], outcome=item.outcome, outcome_timestamp=item.outcomeTimestamp[:40],
            accepted_suggestions=tuple(s.id[:64] for s in item.acceptedSuggestions or []),
            override_code=reason.code[:64] if reason and reason.code else None,
            override_display=reason.display[:200] if reason and reason.display else None,
            has_comment=bool(item.overrideReason and item.overrideReason.userComment)))
    # The overview and data-incomplete are never snoozed (their PlanDefinition card tier): nothing to record.
    unsnoozable = {r.id for r in runtime.knowledge.rules if r.uncapped}
    store = partial(store_feedback, runtime.db, service.id, entries, client=client, now=runtime.clock(),
                    snooze_days=runtime.settings.snooze_days, snoozable=lambda rule: rule not in unsnoozable,
                    snooze_index=runtime.snoozes)
    try:
        try:
            result = await anyio.to_thread.run_sync(store)
        except FeedbackRefused as exc:
            if exc.error != "unknown-card":
                raise
            result = await _retry_unknown_card(runtime, store)
    except FeedbackRefused as exc:
        raise ApiError(exc.status, exc.error, exc.detail) from None
    except SQLAlchemyError:
        raise ApiError(503, "storage-unavailable", "feedback could not be stored; nothing was written") from None
    body: dict[str, object] = {"stored": result.stored, "alreadyStored": result.already_stored}
    if result.snoozed:
        body["snoozed"] = [{"rule": z.rule_id, "reason": z.reason, "until": _iso(z.until)} for z in result.snoozed]
    if result.not_snoozed:
        body["notSnoozed"] = result.not_snoozed
    return json_response(body, prune=False)


# The card may still sit in an audit queue: this worker's (flushed at once) or another worker's (written within
# its batch window). Look again a few times before answering 404.
_UNKNOWN_CARD_RETRIES = (0.0, 0.15, 0.3, 0.6)


async def _retry_unknown_card(runtime: Runtime, store: Callable[[], FeedbackResult]) -> FeedbackResult:
    await anyio.to_thread.run_sync(runtime.audit.flush)
    for i, delay in enumerate(_UNKNOWN_CARD_RETRIES):
        await anyio.sleep(delay)
        try:
            return await anyio.to_thread.run_sync(store)
        except FeedbackRefused as exc:
            if exc.error != "unknown-card" or i == len(_UNKNOWN_CARD_RETRIES) - 1:
                raise
    raise RuntimeError("unreachable")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.get("/cds-services/{service_id}/feedback/report", summary="Accept / override counts per rule",
            tags=["operations"], dependencies=[Depends(verified_client)])
async def get_feedback_report(runtime: RuntimeDep, service: ServiceDep) -> Response:
    rows = await anyio.to_thread.run_sync(feedback_report, runtime.db, service.id)
    snoozes = await anyio.to_thread.run_sync(snooze_report, runtime.db, runtime.clock())
    return json_response({"service": service.id, "rules": rows, "snoozes": snoozes}, prune=False)
