"""Values that card templates ({key} in PlanDefinition titles and descriptions) may use.

Computed lazily per request; the set of keys is fixed so that templates are checked when knowledge loads.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from app.clinical.facts import COMPLICATION_LABELS, SITE_LABELS
from app.clinical.fhirtime import fmt_date
from app.clinical.pain import STEP_NAMES
from app.engine.evaluation import Evaluation
from app.engine.predicates import KnowledgeError, elevated_distress, missing_assessments, newest_acp
from app.read_gaps import gaps_summary


def _sites(ev: Evaluation) -> str:
    sites = ev.facts.sites
    names: list[str] = []
    for site in SITE_LABELS:
        if site not in sites:
            continue
        if site == "bone":
            detail = [SITE_LABELS[s] for s in ("spine", "long-bone") if s in sites]
            names.append(f"bone ({', '.join(detail)})" if detail else "bone")
        elif site not in ("spine", "long-bone"):
            names.append(SITE_LABELS[site])
    if not names and ev.facts.staging_m1:
        return "M1 (sites not coded)"
    return ", ".join(names) or "site not coded"


def _pain_score(ev: Evaluation) -> str:
    return f"{ev.pain.score:g}/10" if ev.pain.score is not None else "not recorded"


def _perf(ev: Evaluation) -> str:
    f = ev.facts
    ecog = f.latest("ecog", f.assessment_window)
    if ecog is not None:
        return f"ECOG {ecog.value:g} ({fmt_date(ecog.when)})"
    kps = f.latest("karnofsky", f.assessment_window)
    if kps is not None:
        return f"Karnofsky {kps.value:g} ({fmt_date(kps.when)})"
    return "performance status not recorded"


def _complications(ev: Evaluation, names: tuple[str, ...]) -> str:
    found = [COMPLICATION_LABELS[n] for n in names if ev.facts.has_complication(n)]
    return ", ".join(found) or "none recorded"


def _lung(ev: Evaluation) -> str:
    parts = [COMPLICATION_LABELS[n] for n in ("dyspnoea", "pleural-effusion") if ev.facts.has_complication(n)]
    spo2 = ev.facts.latest("spo2", ev.facts.acute_window)
    if spo2 is not None and spo2.value < 90:
        parts.append(f"SpO2 {spo2.value:g} %")
    return ", ".join(parts) or "none recorded"


def _liver(ev: Evaluation) -> str:
    parts = [COMPLICATION_LABELS[n] for n in ("jaundice", "pruritus", "nausea") if ev.facts.has_complication(n)]
    if ev.pain.score is not None and ev.pain.score >= 4:
        parts.append(f"pain {ev.pain.score:g}/10")
    return ", ".join(parts) or "none recorded"


def _unreadable_summary(ev: Evaluation) -> str:
    if not ev.gaps and not ev.problems and ev.facts.unclassified_medications:
        # Only unclassified medications (rules v2): name the first, it is what the clinician must check.
        first = ev.facts.unclassified_medications[0].label
        more = len(ev.facts.unclassified_medications) - 1
        label = first if len(first) <= 40 else first[:39].rstrip() + "…"
        extra = f" (+{more} more)" if more else ""
        return f"Medication not recognised: '{label}'{extra}; no 'not on' claims or drug drafts rest on the list"
    return gaps_summary(list(ev.gaps), ev.patient_id, ev.problems)


def _none_recognised(ev: Evaluation, what: str) -> str:
    # With an unclassified medication on the list, "no X" would be an absence claim the record does not support.
    return f"no {what}" if ev.facts.medications_complete else f"no recognised {what}"


def _acp_items(ev: Evaluation) -> str:
    return ", ".join(dict.fromkeys(i.label for i in ev.facts.acp_items())) or "none on record"


def _acp_missing(ev: Evaluation) -> str:
    missing = [label for kind, label in (("code-status", "code status"), ("place-of-death", "preferred place of death"))
               if not ev.facts.acp.get(kind)]
    return " and ".join(missing) or "nothing"


def _weight(ev: Evaluation) -> str:
    w = ev.weight
    return f"{w.percent:g} % since {fmt_date(w.since)}" if w else "no weight trend"


def _distress(ev: Evaluation) -> str:
    return ", ".join(e.text.split(" on ")[0] for e in elevated_distress(ev)) or "no elevated score"


def _spo2(ev: Evaluation) -> str:
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    return f"SpO2 {m.value:g} %" if m else "SpO2 not recorded"


VALUES: dict[str, Callable[[Evaluation], str]] = {
    "phase": lambda ev: ev.phase.name,
    "phase_cap": lambda ev: ev.phase.name.capitalize(),
    "phase_evidence": lambda ev: "; ".join(e.text for e in ev.phase.evidence) or "no acute signal",
    "sites": _sites,
    "pain_score": _pain_score,
    "pain_date": lambda ev: fmt_date(ev.pain.when),
    "pain_severity": lambda ev: ev.pain.severity,
    "pain_step": lambda ev: f"step {ev.pain.step} ({STEP_NAMES[ev.pain.step]})",
    "analgesics": lambda ev: ", ".join(ev.facts.drug_names("non-opioid-analgesic", "weak-opioid",
                                                            "strong-opioid")) or _none_recognised(ev, "analgesic"),
    "next_step": lambda ev: ev.pain.next_label(),
    "next_step_short": lambda ev: ev.pain.next_short(),
    "perf": _perf,
    "calcium": lambda ev: ev.calcium.describe() if ev.calcium else "calcium not measured in 30 days",
    "calcium_severity": lambda ev: "severe" if ev.calcium and ev.calcium.severe else "mild",
    "distress": _distress,
    "weight_loss": _weight,
    "spo2": _spo2,
    "opioids": lambda ev: ", ".join(ev.facts.drug_names("weak-opioid", "strong-opioid"))
    or _none_recognised(ev, "opioid"),
    "anticonvulsants": lambda ev: ", ".join(ev.facts.drug_names("anticonvulsant"))
    or _none_recognised(ev, "anticonvulsant"),
    "corticosteroids": lambda ev: ", ".join(ev.facts.drug_names("corticosteroid")) or "none active",
    "acp_date": lambda ev: fmt_date(n.when) if (n := newest_acp(ev)) else "never",
    "acp_items": _acp_items,
    "acp_missing": _acp_missing,
    "missing_assessments": lambda ev: ", ".join(missing_assessments(ev)) or "none",
    "unreadable": lambda ev: "; ".join(
        [*ev.problems, *(f"the drug class of '{d.label}'" for d in ev.facts.unclassified_medications)]) or "nothing",
    "unreadable_summary": _unreadable_summary,
    "brain_symptoms": lambda ev: _complications(ev, ("seizure", "cerebral-oedema")),
    "liver_symptoms": _liver,
    "lung_symptoms": _lung,
    "skin_findings": lambda ev: ", ".join(
        x for x in (("skin / chest wall metastasis" if ev.facts.has_site("skin") else ""),
                    ("fungating wound" if ev.facts.has_complication("fungating-wound") else "")) if x)
    or "none recorded",
    "complications": lambda ev: ", ".join(COMPLICATION_LABELS[n] for n in ev.facts.complications) or "none",
}
KEYS = frozenset(VALUES)


class TemplateValues(dict[str, str]):
    """A dict that computes a template value the first time it is asked for."""

    def __init__(self, ev: Evaluation) -> None:
        super().__init__()
        self._ev = ev

    def __missing__(self, key: str) -> str:
        value = VALUES[key](self._ev)
        self[key] = value
        return value


_FORMATTER = string.Formatter()


def check_template(template: str, where: str) -> None:
    try:
        fields = [name for _, name, spec, conv in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        raise KnowledgeError(f"{where}: bad template {template!r}: {exc}") from exc
    for name in fields:
        if name not in VALUES:  # not KEYS: order-time keys are registered by app.orders
            raise KnowledgeError(f"{where}: unknown template key {{{name}}}")


def render(template: str, values: TemplateValues) -> str:
    return template.format_map(values)
