"""The WHO analgesic ladder: step-up, next step, uncontrolled pain on a strong opioid, laxatives."""

from __future__ import annotations

from app.clinical.evaluation import MEDICATION_TYPES, Evaluation, Evidence
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import Findings, unclassified_evidence


def _pain_line(ev: Evaluation) -> Evidence:
    p = ev.pain
    drugs = ", ".join(ev.facts.drug_names("non-opioid-analgesic", "weak-opioid", "strong-opioid")) or "none"
    score = f"pain {p.score:g}/10 on {fmt_date(p.when)} ({p.severity})" if p.score is not None else "no pain score"
    refs = tuple(r for r in [p.ref] if r)
    return Evidence(f"{score}; WHO ladder step {p.step} (analgesics: {drugs})", refs)


def pain_step_up(ev: Evaluation, _: str | None) -> Findings:
    """Moderate pain on step 0-1 or severe on step 0-2, by the recognised analgesics. An unclassified active
    medication leaves the step unknown: the card still fires (pain needs review) but says so, and its drafts need
    MedicationsComplete (clinical-rules section 5, v2). An unreadable medication list keeps it silent."""
    if ev.unreadable_types & MEDICATION_TYPES:
        return None
    if not ev.pain.step_up:
        return None
    return [_pain_line(ev), *unclassified_evidence(ev)]


def no_laxative_recognised(ev: Evaluation, _: str | None) -> Findings:
    """No active laxative among the recognised medications, with the medication list read. Unlike `not
    OnDrugClass(laxative)` it holds with an unclassified medication: the card then says 'no laxative recognised'
    and offers no draft (clinical-rules section 5, v2)."""
    if ev.unreadable_types & MEDICATION_TYPES or ev.facts.on_drug("laxative"):
        return None
    return [Evidence("no laxative recognised on the medication list"), *unclassified_evidence(ev)]


NEXT_STEP_ARGS = frozenset({"non-opioid", "weak-opioid", "strong-opioid"})


def next_step(ev: Evaluation, arg: str | None) -> Findings:
    target = ev.pain.target_step
    if target is None:
        return None
    if arg == "non-opioid":
        # The ladder keeps a non-opioid at every step: offer it when none is active.
        return None if ev.facts.on_drug("non-opioid-analgesic") else []
    wanted = {"weak-opioid": 2, "strong-opioid": 3}[arg or ""]
    return [] if target == wanted else None


def pain_uncontrolled_on_strong_opioid(ev: Evaluation, _: str | None) -> Findings:
    return [_pain_line(ev)] if ev.pain.uncontrolled_on_strong_opioid else None
