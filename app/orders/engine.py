"""Fire the order-time rules (PlanDefinition-order-time) on one call's draft orders.

The cards are built by the patient-view engine (same summary, detail, source, override reasons and ranking);
what differs is that a rule fires on named drafts and that its suggestions act on those drafts: `create` a new
draft (from an ActivityDefinition), `update` a draft (the changed copy, every other field kept) or `delete` it
(by `resourceId`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from app.clinical.evaluation import Evaluation, Evidence
from app.engine.context import TemplateValues, render
from app.engine.engine import Engine, FiredRule, Offer, Snooze
from app.engine.knowledge import Rule, SuggestionRule
from app.orders.drafts import ClinicalDraft, OrderEvaluation
from app.orders.predicates import DraftEvidence
from app.orders.radiotherapy import with_fractionation


def _targets(evidence: list[Evidence]) -> list[ClinicalDraft]:
    seen: dict[int, ClinicalDraft] = {}
    for e in evidence:
        if isinstance(e, DraftEvidence) and e.draft is not None:
            seen.setdefault(e.draft.order.index, e.draft)
    return list(seen.values())


def _per_rule_values(evidence: list[Evidence]) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for e in evidence:
        if isinstance(e, DraftEvidence):
            for key, value in e.values:
                items = values.setdefault(key, [])
                if value not in items:
                    items.append(value)
    return {k: ", ".join(v) for k, v in values.items()}


def _dynamic_value(activity: dict[str, Any], path: str) -> str | None:
    for dv in activity.get("dynamicValue") or []:
        if dv.get("path") == path:
            return str((dv.get("expression") or {}).get("expression", "")).strip()
    return None


def _cgy(text: str | None) -> float | None:
    """A FHIRPath quantity literal in cGy ("800 'cGy'")."""
    if not text:
        return None
    value, _, unit = text.partition(" ")
    try:
        number = float(value)
    except ValueError:
        return None
    return number if unit.strip("' ") == "cGy" else None


class OrderEngine(Engine):
    """The order-time rules: they fire only on named drafts, their templates read those drafts' values, and their
    suggestions create, update or delete drafts (recommended when a card offers one)."""

    def fire(self, ev: Evaluation, hook_instance: str = "", snoozes: Iterable[Snooze] = ()) -> list[FiredRule]:
        # Without judged drafts there is nothing to fire on. Outside the service's scope the order hooks are
        # silent, as patient-view is: no order-time rule is the uncapped could-not-read card.
        if not isinstance(ev, OrderEvaluation) or not ev.orders.judged:
            return []
        return super().fire(ev, hook_instance, snoozes)

    def fires(self, rule: Rule, ev: Evaluation) -> list[Evidence] | None:
        evidence = super().fires(rule, ev)
        return evidence if evidence is not None and _targets(evidence) else None

    def values_for(self, ev: Evaluation, evidence: list[Evidence], shared: TemplateValues) -> TemplateValues:
        # The drafts' own values belong to this card only: a fresh set, never the shared one.
        values = TemplateValues(ev, self.vocabulary.values)
        values.update(_per_rule_values(evidence))
        return values

    def offer(self, rule: Rule, s: SuggestionRule, ev: Evaluation, evidence: list[Evidence],
              values: TemplateValues) -> list[Offer]:
        if s.action_type == "create":
            return super().offer(rule, s, ev, evidence, values)
        targets = _targets(evidence)
        label, description = render(s.label, values), render(s.description, values)
        # A draft's name is the EHR's text: appended after rendering, never read as a template.
        if s.action_type == "remove":
            return [Offer(f"{label}: {d.name}", (s.id, ref),
                          {"type": "delete", "description": f"{description} ({d.name})", "resourceId": ref})
                    for d in targets if (ref := d.ref)]
        if s.action_type == "update":
            return [u for d in targets if (u := _update(s, d, label, description)) is not None]
        return []

    def recommended(self, rule: Rule, offers: Sequence[Offer]) -> bool:
        return len(offers) == 1


def _update(s: SuggestionRule, d: ClinicalDraft, label: str, description: str) -> Offer | None:
    fx = d.radiotherapy.fractionation if d.radiotherapy else None
    per = _cgy(_dynamic_value(s.activity, "fractionDose"))
    fractions_text = _dynamic_value(s.activity, "fractions")
    if fx is None or per is None or not fractions_text or not fractions_text.isdigit():
        return None  # unreadable fractionation: the card informs, it does not rewrite the order
    resource = with_fractionation(d.order.resource, per, int(fractions_text))
    get_fhir_model_class("ServiceRequest").model_validate(resource)  # still valid R4 after the change
    return Offer(label, (s.id, d.ref or str(d.order.index)),
                 {"type": "update", "description": f"{description} ({d.name})", "resource": resource})
