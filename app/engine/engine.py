"""Apply the compiled rules to one patient's evaluation and produce CDS Hooks card dicts.

Cards are plain dicts in the CDS Hooks 2.0 shape (no pydantic on the hot path); optional fields with no value
are left out. Suggestion resources are validated with fhir.resources before they are emitted.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from app.clinical.draft_safety import Withheld, draft_blockers
from app.clinical.fhirtime import fmt_date
from app.engine.context import TemplateValues, render
from app.engine.evaluation import Evaluation, Evidence
from app.engine.knowledge import INDICATOR_RANK, PRIORITY_TO_INDICATOR, Knowledge, Rule
from app.engine.suggestions import build_draft
from app.settings import RESOURCE_LEVELS
from plandefinitions.loader import RULE_SYSTEM

_NAMESPACE = uuid.UUID("6f1e1f3e-9a53-4c1b-8d0e-2f6b1c3a9e71")
OVERRIDE_SYSTEM = "http://mbc-cds.example.org/fhir/CodeSystem/mbc-cds-override-reason"
OVERRIDE_REASONS = [
    {"system": OVERRIDE_SYSTEM, "code": "already-addressed", "display": "Already addressed"},
    {"system": OVERRIDE_SYSTEM, "code": "patient-declined", "display": "Patient declined"},
    {"system": OVERRIDE_SYSTEM, "code": "not-appropriate", "display": "Not clinically appropriate now"},
    {"system": OVERRIDE_SYSTEM, "code": "data-wrong", "display": "Record is wrong or out of date"},
]
SUMMARY_MAX = 139
ACP_RULES = ("acp-stable", "acp-acute", "acp-revisit")


@dataclass(frozen=True)
class EngineOptions:
    resource_level: str = "enhanced"
    info_card_cap: int = 8
    acp_app_url: str | None = None
    assessment_form_url: str | None = None


@dataclass
class FiredRule:
    rule: Rule
    indicator: str
    card: dict[str, Any]


def _level_ok(level: str, allowed: str) -> bool:
    return RESOURCE_LEVELS.index(level) <= RESOURCE_LEVELS.index(allowed)


_NAMESPACE_BYTES = _NAMESPACE.bytes


def _stable_uuid(*parts: str) -> str:
    """uuid.uuid5(_NAMESPACE, "|".join(parts)) as a string, without building UUID objects (hot path)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _evidence_lines(evidence: list[Evidence]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for e in evidence:
        if e.text in seen:
            continue
        seen.add(e.text)
        refs = f" ({', '.join(e.refs[:4])})" if e.refs else ""
        lines.append(f"- {e.text}{refs}")
    return lines


def _reasons(ev: Evaluation, evidence: list[Evidence]) -> list[str]:
    refs = [r for e in evidence for r in e.refs if r.startswith("Condition/") and not r.endswith("(no id)")]
    if not refs:
        # The cancer itself: the metastasis conditions, else (M1 / stage IV from staging only) the primary.
        refs = [d.ref for d in ev.facts.metastasis + ev.facts.breast_primary if not d.ref.endswith("(no id)")]
    return list(dict.fromkeys(refs))[:5]


def _source_line(rule: Rule) -> str:
    cites = "; ".join(f"{c.label}" + (f" ({c.display})" if c.display and c.display != c.label else "")
                      for c in rule.citations)
    return f"\n**Source:** {cites}. Suggestions are drafts for a clinician to review and sign."


class Engine:
    def __init__(self, knowledge: Knowledge, options: EngineOptions, hook: str = "patient-view") -> None:
        self.knowledge = knowledge
        self.options = options
        self.hook = hook
        mine = [r for r in knowledge.rules if hook in r.hooks]
        self.rules = [r for r in mine if _level_ok(r.level, options.resource_level)]
        self.withheld = [r for r in mine if not _level_ok(r.level, options.resource_level)]
        self._source_lines = {r.id: _source_line(r) for r in knowledge.rules}

    def cards(self, ev: Evaluation, hook_instance: str = "") -> list[dict[str, Any]]:
        fired = self.fire(ev, hook_instance)
        return [f.card for f in fired]

    def fire(self, ev: Evaluation, hook_instance: str = "") -> list[FiredRule]:
        if not ev.facts.in_scope:
            return self._out_of_scope(ev, hook_instance)
        values = TemplateValues(ev)
        fired: list[FiredRule] = []
        for rule in self.rules:
            evidence: list[Evidence] = []
            for cond in rule.conditions:
                result = cond(ev)
                if result is None:
                    break
                evidence.extend(result)
            else:
                fired.append(self._card(rule, ev, evidence, values, hook_instance))
        return self._rank_and_cap(fired, ev)

    def _out_of_scope(self, ev: Evaluation, hook_instance: str) -> list[FiredRule]:
        # Silence is only safe when the record could be read; otherwise say what is missing.
        if not ev.problems or not (ev.facts.breast_primary or ev.facts.metastasis or _conditions_unread(ev)):
            return []
        rule = next((r for r in self.rules if r.id == "data-incomplete"), None)
        if rule is None:
            return []
        evidence = [Evidence(f"could not be read: {p}") for p in ev.problems]
        return [self._card(rule, ev, evidence, TemplateValues(ev), hook_instance)]

    def _rank_and_cap(self, fired: list[FiredRule], ev: Evaluation) -> list[FiredRule]:
        fired.sort(key=lambda f: (INDICATOR_RANK[f.indicator], f.rule.order))
        cap = self.options.info_card_cap
        kept: list[FiredRule] = []
        info = 0
        for f in fired:
            if f.indicator == "info":
                info += 1
                # The overview and "could not read" are never capped: silence must not hide missing data.
                if info > cap and f.rule.id not in ("mbc-overview", "data-incomplete"):
                    continue
            kept.append(f)
        overview = next((f for f in kept if f.rule.id == "mbc-overview"), None)
        if overview is not None:
            others = [f"- {f.card['summary']}" for f in kept if f is not overview]
            if others:
                overview.card["detail"] += "\n\n**Other cards for this patient**\n" + "\n".join(others)
        return kept

    def _card(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
              hook_instance: str) -> FiredRule:
        priority = rule.priority_fn(ev) if rule.priority_fn else rule.priority
        indicator = PRIORITY_TO_INDICATOR.get(priority, "info")
        card_uuid = _stable_uuid(hook_instance or uuid.uuid4().hex, ev.patient_id, rule.id)
        suggestions, withheld = self._suggestions(rule, ev, evidence, card_uuid)
        detail = self._detail(rule, ev, evidence, values, withheld)
        first = rule.citations[0]
        source: dict[str, Any] = {
            "label": f"mbc-cds: {first.label}"[:200],
            "topic": {"system": RULE_SYSTEM, "code": rule.id, "display": rule.display},
        }
        if first.url:
            source["url"] = first.url
        card: dict[str, Any] = {
            "uuid": card_uuid,
            "summary": _summary(render(rule.title, values)),
            "detail": detail,
            "indicator": indicator,
            "source": source,
        }
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = rule.selection_behavior
        card["overrideReasons"] = OVERRIDE_REASONS
        links = [{"label": c.label, "url": c.url, "type": "absolute"} for c in rule.citations if c.url]
        if rule.id in ACP_RULES and self.options.acp_app_url:
            links.append({"label": "Open the advance care planning app", "url": self.options.acp_app_url,
                          "type": "smart"})
        if rule.id in ("assessment-due", "pain-assessment-due", "distress-screening-due") \
                and self.options.assessment_form_url:
            links.append({"label": "Open the assessment form", "url": self.options.assessment_form_url,
                          "type": "smart"})
        if links:
            card["links"] = list({link["url"]: link for link in links}.values())
        return FiredRule(rule, indicator, card)

    def _detail(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
                withheld_drafts: list[Withheld] | None = None) -> str:
        parts: list[str] = []
        phase = ev.phase
        if rule.id == "mbc-overview":
            parts.append(f"**Phase: {phase.name}**" + (" (JCO OP 2021 acute-phase signals in the last "
                                                         f"{ev.facts.acute_window.days} days)" if phase.evidence
                                                         else ""))
            parts.extend(_evidence_lines([Evidence(f"{e.code}: {e.text}", e.refs) for e in phase.evidence]))
            if not phase.evidence:
                parts.extend(_evidence_lines(_assessment_evidence(ev)))
            parts.append(f"\n**Metastatic sites:** {values['sites']}")
            parts.extend(_evidence_lines([Evidence(f"{s.replace('-', ' ')} (first recorded {fmt_date(f.first)})",
                                                   tuple(f.refs)) for s, f in ev.facts.sites.items()]))
            if phase.pattern:
                parts.append(f"\n**Progression pattern:** {phase.pattern}")
        else:
            parts.append("**Why**")
            parts.extend(_evidence_lines(evidence))
            met_refs = tuple(dict.fromkeys(d.ref for d in ev.facts.metastasis + ev.facts.staging_m1))
            parts.extend(_evidence_lines([Evidence(f"metastatic breast cancer: {values['sites']}", met_refs)]))
            phase_line = f"- Phase: {phase.name}"
            if phase.evidence:
                phase_line += f" ({values['phase_evidence']})"
            parts.append(phase_line)
        if rule.description:
            parts.append("\n" + render(rule.description, values))
        if withheld_drafts:
            # Allergy / renal checks (rules v2): say which draft was held back and why, naming the allergy.
            parts.append("\n**Draft withheld**")
            parts.extend(_evidence_lines([Evidence(w.text, w.refs) for w in withheld_drafts]))
        withheld = [s.label for s in rule.suggestions if not _level_ok(s.level, self.options.resource_level)]
        if withheld:
            parts.append(f"\n*At a higher resource level this card would also offer:* {'; '.join(withheld)}.")
        parts.append(self._source_lines[rule.id])
        return "\n".join(parts)

    def _suggestions(self, rule: Rule, ev: Evaluation, evidence: list[Evidence],
                     card_uuid: str) -> tuple[list[dict[str, Any]], list[Withheld]]:
        out: list[dict[str, Any]] = []
        withheld: list[Withheld] = []
        reasons: list[str] | None = None
        for s in rule.suggestions:
            if not _level_ok(s.level, self.options.resource_level):
                continue
            if any(cond(ev) is None for cond in s.conditions):
                continue
            if reasons is None:
                reasons = _reasons(ev, evidence)
            resource = build_draft(s.activity, patient_id=ev.patient_id, reasons=reasons, now=ev.now,
                                   note=f"Drafted by mbc-cds rule {rule.id}; review before signing.")
            if ev.terminology is not None and resource.get("resourceType") == "MedicationRequest":
                blocked = draft_blockers(ev.facts, resource, ev.terminology)
                if blocked:
                    withheld.extend(b for b in blocked if b not in withheld)
                    continue
            out.append({
                "label": s.label[:200],
                "uuid": _stable_uuid(card_uuid, s.id),
                "isRecommended": len(rule.suggestions) == 1,
                "actions": [{"type": "create", "description": s.description or s.label, "resource": resource}],
            })
        return out, withheld


_ASSESSMENT_LABELS = {"pain-score": "pain", "ecog": "ECOG", "karnofsky": "Karnofsky", "distress": "distress",
                      "phq9": "PHQ-9", "phq2": "PHQ-2", "gad7": "GAD-7"}


def _assessment_evidence(ev: Evaluation) -> list[Evidence]:
    """Why a phase is stable (assessments without acute signals) or unknown (none in the window)."""
    window = ev.facts.assessment_window
    found = []
    for name, label in _ASSESSMENT_LABELS.items():
        m = ev.facts.latest(name, window)
        if m is not None:
            found.append(Evidence(f"latest {label} {m.value:g} on {fmt_date(m.when)}", (m.ref,)))
    unread = sorted(ev.unreadable_types & _PHASE_TYPES)
    if unread:
        # "no acute-phase signal", "no assessment" are absences: not claimed from a record read in part
        return [Evidence(f"phase judged on part of the record: {', '.join(unread)} could not be read in full, "
                         "an acute-phase signal or assessment may be missing"), *found]
    if not found:
        return [Evidence(f"no symptom or performance assessment in the last {window.days} days")]
    return [Evidence(f"no acute-phase signal in the last {ev.facts.acute_window.days} days"), *found]


# the resource types that hold the acute-phase signals (A1-A6) and the assessments
_PHASE_TYPES = frozenset({"Condition", "Observation", "Encounter"})


def _conditions_unread(ev: Evaluation) -> bool:
    """Scope cannot be ruled out when the Patient or the Conditions could not be read (in full)."""
    return bool({"Condition", "Patient"} & ev.unreadable_types) or any(
        p.startswith("Condition") or "conditions" in p for p in ev.problems)
