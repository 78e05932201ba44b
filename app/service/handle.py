"""Handle one hook request (patient-view, order-select, order-sign): resolve its prefetch through the FHIR
client, then evaluate the record. No HTTP routing here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.engine.engine import Snooze
from app.service.evaluate import RecordEvaluator
from app.service.outcome import HookOutcome
from cds_hooks.draft_orders import parse_draft_orders
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.hooks import ORDER_HOOKS
from cds_hooks.models import HookRequest


class NoDataError(Exception):
    """Nothing to read: no prefetch and no FHIR server (HTTP 412)."""

    def __init__(self) -> None:
        super().__init__("no prefetch data and no fhirServer to read the patient's record from")


def _identity(resource: Any) -> tuple[str, str] | None:
    """(resourceType, id) when both are non-empty strings; None for anything else (never hashed raw: an id
    from the wire may be any JSON value)."""
    if not isinstance(resource, dict):
        return None
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return rtype, rid
    return None


class HookHandler:
    """A hook request in, a `HookOutcome` out: the prefetch the EHR sent, completed from its FHIR server by
    `resolver`, evaluated by `evaluator` (the same one the offline paths use)."""

    def __init__(self, evaluator: RecordEvaluator, resolver: PrefetchResolver) -> None:
        self.evaluator = evaluator
        self.resolver = resolver

    async def handle(self, request: HookRequest, now: datetime | None = None,
                     extra: list[Any] | None = None, extra_skipped: int = 0,
                     snoozes: list[Snooze] | None = None) -> HookOutcome:
        """The outcome of `request` at `now`. `extra` are resources sent under prefetch keys the service did not
        ask for (`extra_skipped` the entries among them that held none); NoDataError when there is nothing to
        read, DraftOrderError when the draft orders are malformed."""
        now = now or datetime.now(UTC)
        nothing_to_ask = not request.fhirServer and not extra
        # No prefetch at all: nothing to judge the drafts against either, so 412 before they are parsed.
        if nothing_to_ask and not request.prefetch:
            raise NoDataError()
        # Draft orders are checked before anything is fetched: a malformed one is the caller's error (400).
        drafts = parse_draft_orders(request.draft_orders(), request.selections() if request.hook == "order-select"
                                    else None) if request.hook in ORDER_HOOKS else None
        result = await self.resolver.resolve(request, self.evaluator.templates)
        if nothing_to_ask and not result.had_any_data:
            raise NoDataError()
        resources = result.all_resources()
        if extra:
            seen = {k for r in resources if (k := _identity(r)) is not None}
            resources.extend(r for r in extra if (k := _identity(r)) is None or k not in seen)
        if drafts is not None:
            outcome = self.evaluator.evaluate_orders(
                request.hook, drafts, resources, request.patient_id() or "", now, result.problems,
                server=bool(request.fhirServer), hook_instance=request.hookInstance, skipped=result.skipped,
                extra_skipped=extra_skipped, snoozes=snoozes)
        else:
            outcome = self.evaluator.evaluate(
                resources, request.patient_id() or "", now, result.problems, server=bool(request.fhirServer),
                hook_instance=request.hookInstance, skipped=result.skipped, extra_skipped=extra_skipped,
                snoozes=snoozes)
        return outcome
