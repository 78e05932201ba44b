"""One hook call (patient-view, order-select, order-sign): resolve prefetch, evaluate the patient, fire the rules
of that hook. No HTTP routing here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.clinical.evaluation import Evaluation, Windows, evaluate_patient
from app.engine.engine import Engine, EngineOptions, FiredRule, Snooze
from app.engine.knowledge import Knowledge
from app.orders.cache import LruCache, cache_key
from app.orders.drafts import order_context, with_orders
from app.orders.engine import ORDER_HOOKS, OrderEngine
from app.read_gaps import describe_gaps, gaps_from_problems, unreadable_types
from app.service_definition import prefetch_templates, resource_type_of
from app.settings import Settings
from cds_hooks.cards import Card
from cds_hooks.draft_orders import DraftOrders, parse_draft_orders
from cds_hooks.fallback import FetchProblem, PrefetchResolver
from cds_hooks.models import HookRequest
from cds_hooks.outbound import OriginLimiter
from terminology import Terminology


class NoDataError(Exception):
    """Nothing to read: no prefetch and no FHIR server (HTTP 412)."""


@dataclass
class HookOutcome:
    cards: list[Card]
    fired: list[FiredRule]
    evaluation: Evaluation
    problems: list[FetchProblem] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        return [f.rule.id for f in self.fired]


def _identity(resource: Any) -> tuple[str, str] | None:
    """(resourceType, id) when both are non-empty strings; None for anything else (never hashed raw: an id
    from the wire may be any JSON value)."""
    if not isinstance(resource, dict):
        return None
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return rtype, rid
    return None


class HookProcessor:
    def __init__(self, settings: Settings, terminology: Terminology, knowledge: Knowledge,
                 http: httpx.AsyncClient | None) -> None:
        self.settings = settings
        self.terminology = terminology
        self.templates = prefetch_templates(terminology)
        self.types = {key: resource_type_of(t) for key, t in self.templates.items()}
        options = EngineOptions(
            resource_level=settings.resource_level, info_card_cap=settings.info_card_cap,
            card_budget=settings.card_budget,
            acp_app_url=settings.acp_app_url, assessment_form_url=settings.assessment_form_url,
            uuid_key=settings.uuid_key())
        self.engine = Engine(knowledge, options)
        self.order_engines = {hook: OrderEngine(knowledge, options, hook) for hook in ORDER_HOOKS}
        self.order_cache: LruCache[Evaluation] = LruCache(settings.order_cache_size, settings.order_cache_seconds)
        # Everything in the settings that can change an evaluation is part of the cache key (hashed, never kept).
        self._settings_key = settings.model_dump_json()
        self.resolver = PrefetchResolver(
            http, max_pages=settings.fhir_max_pages, timeout_total=settings.fhir_timeout_seconds,
            limiter=OriginLimiter(settings.fhir_max_connections_per_origin),
            per_hook=settings.fhir_max_concurrent_fetches_per_hook, max_resources=settings.fetched_resource_cap(),
            url_allowed=settings.fhir_allow_list().allows) if http else None
        self.windows = Windows(acute_window=timedelta(days=settings.acute_window_days),
                               assessment_window=timedelta(days=settings.assessment_window_days),
                               acp_revisit=timedelta(days=settings.acp_revisit_days))

    async def run(self, request: HookRequest, now: datetime | None = None,
                  extra: list[Any] | None = None, extra_skipped: int = 0,
                  snoozes: list[Snooze] | None = None) -> HookOutcome:
        now = now or datetime.now(UTC)
        if self.resolver is None:
            raise RuntimeError("HookProcessor has no HTTP client")
        # Draft orders are checked before anything is fetched: a malformed one is the caller's error (400).
        drafts = parse_draft_orders(request.draft_orders(), request.selections() if request.hook == "order-select"
                                    else None) if request.hook in ORDER_HOOKS else None
        result = await self.resolver.resolve(request, self.templates)
        if not result.had_any_data and not request.fhirServer and not extra:
            raise NoDataError("no prefetch data and no fhirServer to read from")
        resources = result.all_resources()
        if extra:
            seen = {k for r in resources if (k := _identity(r)) is not None}
            resources.extend(r for r in extra if (k := _identity(r)) is None or k not in seen)
        skipped = dict(result.skipped)
        if extra_skipped:
            skipped["Extra prefetch data"] = extra_skipped
        if drafts is not None:
            outcome = self.evaluate_orders(request.hook, drafts, resources, request.patient_id() or "", now,
                                           result.problems, server=bool(request.fhirServer),
                                           hook_instance=request.hookInstance, skipped=skipped, snoozes=snoozes)
        else:
            outcome = self.evaluate(resources, request.patient_id() or "", now,
                                    result.problems, server=bool(request.fhirServer),
                                    hook_instance=request.hookInstance, skipped=skipped, snoozes=snoozes)
        return outcome

    def evaluate(self, resources: list[Any], patient_id: str, now: datetime,
                 problems: list[FetchProblem] | None = None, *, server: bool = True,
                 hook_instance: str = "", skipped: dict[str, int] | None = None,
                 snoozes: list[Snooze] | None = None) -> HookOutcome:
        ev, real = self._evaluation(resources, patient_id, now, problems, server=server, skipped=skipped)
        fired = self.engine.fire(ev, hook_instance, snoozes or ())
        return HookOutcome(cards=[f.card for f in fired], fired=fired, evaluation=ev, problems=real)

    def evaluate_orders(self, hook: str, drafts: DraftOrders, resources: list[Any], patient_id: str, now: datetime,
                        problems: list[FetchProblem] | None = None, *, server: bool = True,
                        hook_instance: str = "", skipped: dict[str, int] | None = None,
                        snoozes: list[Snooze] | None = None) -> HookOutcome:
        """order-select / order-sign: the patient's evaluation (reused from an earlier call on the same patient,
        record, drafts and settings) plus the draft orders, through the order-time rules of `hook`."""
        real = [p for p in problems or [] if p.kind != "missing" or server]
        try:
            key: str | None = cache_key(patient_id, resources, [(p.key, p.kind, p.status) for p in real],
                                        skipped or {}, [d.resource for d in drafts.drafts], self._settings_key,
                                        server, now.date().isoformat())
        except TypeError:  # a value orjson cannot write (an integer over 64 bits): evaluate, do not cache
            key = None
        ev = self.order_cache.get(key) if key else None
        if ev is None:
            ev, real = self._evaluation(resources, patient_id, now, problems, server=server, skipped=skipped)
            if key:
                self.order_cache.put(key, ev)
        context = order_context(hook, drafts, self.terminology)
        fired = self.order_engines[hook].fire(with_orders(ev, context), hook_instance, snoozes or ())
        return HookOutcome(cards=[f.card for f in fired], fired=fired, evaluation=ev, problems=real)

    def _evaluation(self, resources: list[Any], patient_id: str, now: datetime,
                    problems: list[FetchProblem] | None, *, server: bool,
                    skipped: dict[str, int] | None) -> tuple[Evaluation, list[FetchProblem]]:
        # A key the EHR chose not to send, with no server to ask, is what the EHR has: not a read failure.
        real = [p for p in problems or [] if p.kind != "missing" or server]
        # Bundle entries that are not resources: what they were is unknown, so that type is incomplete.
        gaps = gaps_from_problems(real, self.types, skipped)
        ev = evaluate_patient(resources, patient_id=patient_id, now=now, terminology=self.terminology,
                              problems=describe_gaps(gaps), unreadable_types=unreadable_types(gaps),
                              gaps=tuple(gaps), **self.windows)
        return ev, real
