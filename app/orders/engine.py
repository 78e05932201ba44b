"""Fire the order-time rules (PlanDefinition-order-time) on one call's draft orders.

The cards are built by the patient-view engine (same summary, detail, source, override reasons and ranking);
what differs is that a rule fires on named drafts and that its suggestions act on those drafts: `create` a new
draft (from an ActivityDefinition), `update` a draft (the changed copy, every other field kept) or `delete` it
(by `resourceId`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from app.clinical.draft_safety import Withheld, draft_blockers
from app.clinical.evaluation import Evaluation, Evidence
from app.engine.context import TemplateValues, render
from app.engine.engine import Engine, FiredRule, Snooze, _reasons, _stable_uuid, rule_evidence
from app.engine.knowledge import PRIORITY_TO_INDICATOR, Rule, SuggestionRule
from app.engine.suggestions import build_draft
from app.orders.drafts import ClinicalDraft, OrderEvaluation
from app.orders.predicates import DraftEvidence
from app.orders.radiotherapy import with_fractionation
from cds_hooks.cards import Suggestion


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
    def fire(self, ev: Evaluation, hook_instance: str = "", snoozes: Iterable[Snooze] = ()) -> list[FiredRule]:
        # Outside the service's scope (no metastatic breast cancer) the order hooks are silent, as patient-view is.
        if not isinstance(ev, OrderEvaluation) or not ev.orders.judged or not ev.facts.in_scope:
            return []
        # An override snoozes a rule for the patient (clinical-rules section 6); a critical card never is.
        snoozed = {s.rule_id for s in snoozes if s.until > ev.now}
        fired: list[FiredRule] = []
        for rule in self.rules:
            if rule.id in snoozed:
                priority = rule.priority_fn(ev) if rule.priority_fn else rule.priority
                if PRIORITY_TO_INDICATOR.get(priority, "info") != "critical":
                    continue
            evidence = rule_evidence(rule, ev)
            if evidence is not None and _targets(evidence):
                fired.append(self._card(rule, ev, evidence, TemplateValues(ev, self._values), hook_instance))
        return self._rank_and_cap(fired, ev)

    def _card(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
              hook_instance: str) -> FiredRule:
        values.update(_per_rule_values(evidence))
        return super()._card(rule, ev, evidence, values, hook_instance)

    def _suggestions(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
                     card_uuid: str) -> tuple[list[Suggestion], list[Withheld]]:
        out: list[Suggestion] = []
        withheld: list[Withheld] = []
        targets = _targets(evidence)
        for s in rule.suggestions:
            if not s.offered_at(self.options.resource_level) or any(c(ev) is None for c in s.conditions):
                continue
            if s.action_type == "create":
                created = self._create(s, rule, ev, evidence, values, card_uuid)
                resource = created["actions"][0]["resource"]
                # Never draft a drug the patient is allergic to (or one severe renal impairment rules out).
                blocked = draft_blockers(ev.facts, resource, ev.terminology) if ev.terminology is not None else []
                if blocked:
                    withheld.extend(b for b in blocked if b not in withheld)
                    continue
                out.append(created)
            elif s.action_type == "remove":
                out.extend(self._delete(s, d, ref, values, card_uuid) for d in targets if (ref := d.ref))
            elif s.action_type == "update":
                out.extend(u for d in targets if (u := self._update(s, d, values, card_uuid)) is not None)
        if len(out) == 1:
            out[0]["isRecommended"] = True
        return out, withheld

    def _uuid(self, *parts: str) -> str:
        return _stable_uuid(self.options.uuid_key, *parts)

    def _create(self, s: SuggestionRule, rule: Rule, ev: Evaluation, evidence: list[Evidence],
                values: TemplateValues, card_uuid: str) -> Suggestion:
        resource = build_draft(s.activity, patient_id=ev.patient_id, reasons=_reasons(ev, evidence), now=ev.now,
                               note=f"Drafted by mbc-cds rule {rule.id}; review before signing.",
                               task_description=render(s.task_description, values))
        label = render(s.label, values)
        return {"label": label[:200], "uuid": self._uuid(card_uuid, s.id), "isRecommended": False,
                "actions": [{"type": "create", "description": render(s.description, values) or label,
                             "resource": resource}]}

    def _delete(self, s: SuggestionRule, d: ClinicalDraft, ref: str, values: TemplateValues,
                card_uuid: str) -> Suggestion:
        # The draft's name is the EHR's text: appended after rendering, never read as a template.
        return {"label": f"{render(s.label, values)}: {d.name}"[:200], "uuid": self._uuid(card_uuid, s.id, ref),
                "isRecommended": False,
                "actions": [{"type": "delete", "description": f"{render(s.description, values)} ({d.name})",
                             "resourceId": ref}]}

    def _update(self, s: SuggestionRule, d: ClinicalDraft, values: TemplateValues,
                card_uuid: str) -> Suggestion | None:
        fx = d.radiotherapy.fractionation if d.radiotherapy else None
        per = _cgy(_dynamic_value(s.activity, "fractionDose"))
        fractions_text = _dynamic_value(s.activity, "fractions")
        if fx is None or per is None or not fractions_text or not fractions_text.isdigit():
            return None  # unreadable fractionation: the card informs, it does not rewrite the order
        resource = with_fractionation(d.order.resource, per, int(fractions_text))
        get_fhir_model_class("ServiceRequest").model_validate(resource)  # still valid R4 after the change
        return {"label": render(s.label, values)[:200],
                "uuid": self._uuid(card_uuid, s.id, d.ref or str(d.order.index)), "isRecommended": False,
                "actions": [{"type": "update", "description": f"{render(s.description, values)} ({d.name})",
                             "resource": resource}]}
