"""Evaluate one patient's record: the facts, the phase and the rules of patient-view, or of an order hook with
its draft orders. Pure: given the resources, the patient id, the instant, and what could not be read, it reads
nothing else (no HTTP client, no database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from app.clinical.evaluation import Evaluation, Windows, evaluate_patient
from app.data_requirements import prefetch_templates, prefetch_types
from app.engine.engine import Engine, EngineOptions, Snooze
from app.engine.knowledge import Knowledge
from app.orders.cache import LruCache, cache_key
from app.orders.drafts import order_context, with_orders
from app.orders.engine import OrderEngine
from app.read_gaps import gaps_from_problems
from app.service.outcome import HookOutcome
from app.settings import Settings
from cds_hooks.cards import FhirResource
from cds_hooks.draft_orders import DraftOrders
from cds_hooks.fallback import FetchProblem
from cds_hooks.hooks import ORDER_HOOKS
from terminology import Terminology


class RecordEvaluator:
    """The rules of every hook over one patient's record. One instance serves many records (its order cache
    reuses a patient's evaluation between order-select and order-sign)."""

    def __init__(self, settings: Settings, terminology: Terminology, knowledge: Knowledge) -> None:
        self.settings = settings
        self.terminology = terminology
        self.templates = prefetch_templates(terminology)
        self.types = prefetch_types()
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
        self.windows = Windows(acute_window=timedelta(days=settings.acute_window_days),
                               assessment_window=timedelta(days=settings.assessment_window_days),
                               acp_revisit=timedelta(days=settings.acp_revisit_days))

    def evaluate(self, resources: Sequence[FhirResource], patient_id: str, now: datetime,
                 problems: list[FetchProblem] | None = None, *, server: bool = True,
                 hook_instance: str = "", skipped: dict[str, int] | None = None, extra_skipped: int = 0,
                 snoozes: list[Snooze] | None = None) -> HookOutcome:
        """patient-view over `resources`; `problems`, `skipped` (entries without a resource per prefetch key) and
        `extra_skipped` (the same under keys the service did not ask for) say what could not be read, `server`
        whether there was a FHIR server to ask (without one, a key the EHR did not send is not a read failure)."""
        ev, real = self._evaluation(resources, patient_id, now, problems, server=server, skipped=skipped,
                                    extra_skipped=extra_skipped)
        fired = self.engine.fire(ev, hook_instance, snoozes or ())
        return HookOutcome(cards=[f.card for f in fired], fired=fired, evaluation=ev, problems=real)

    def evaluate_orders(self, hook: str, drafts: DraftOrders, resources: Sequence[FhirResource], patient_id: str,
                        now: datetime,
                        problems: list[FetchProblem] | None = None, *, server: bool = True,
                        hook_instance: str = "", skipped: dict[str, int] | None = None, extra_skipped: int = 0,
                        snoozes: list[Snooze] | None = None) -> HookOutcome:
        """order-select / order-sign: the patient's evaluation (reused from an earlier call on the same patient,
        record, drafts and settings) plus the draft orders, through the order-time rules of `hook`."""
        real = [p for p in problems or [] if p.kind != "missing" or server]
        try:
            key: str | None = cache_key(patient_id, resources, [(p.key, p.kind, p.status) for p in real],
                                        [skipped or {}, extra_skipped], [d.resource for d in drafts.drafts],
                                        self._settings_key,
                                        server, now.date().isoformat())
        except TypeError:  # a value orjson cannot write (an integer over 64 bits): evaluate, do not cache
            key = None
        ev = self.order_cache.get(key) if key else None
        if ev is None:
            ev, real = self._evaluation(resources, patient_id, now, problems, server=server, skipped=skipped,
                                        extra_skipped=extra_skipped)
            if key:
                self.order_cache.put(key, ev)
        context = order_context(hook, drafts, self.terminology)
        fired = self.order_engines[hook].fire(with_orders(ev, context), hook_instance, snoozes or ())
        return HookOutcome(cards=[f.card for f in fired], fired=fired, evaluation=ev, problems=real)

    def _evaluation(self, resources: Sequence[FhirResource], patient_id: str, now: datetime,
                    problems: list[FetchProblem] | None, *, server: bool,
                    skipped: dict[str, int] | None, extra_skipped: int) -> tuple[Evaluation, list[FetchProblem]]:
        # A key the EHR chose not to send, with no server to ask, is what the EHR has: not a read failure.
        real = [p for p in problems or [] if p.kind != "missing" or server]
        # Bundle entries that are not resources: what they were is unknown, so that type is incomplete.
        gaps = gaps_from_problems(real, self.types, skipped, extra_skipped)
        ev = evaluate_patient(resources, patient_id=patient_id, now=now, terminology=self.terminology, gaps=gaps,
                              **self.windows)
        return ev, real
