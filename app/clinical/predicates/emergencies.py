"""Oncologic emergencies: spinal cord compression, hypercalcaemia, bowel obstruction."""

from __future__ import annotations

from app.clinical import thresholds as T
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import (
    Findings,
    any_of,
    complication_evidence,
    complication_on_record,
    latest_date,
    site_evidence,
)


def cord_compression_history(ev: Evaluation) -> Evidence | None:
    """A cord compression recorded more than 90 days ago: history for the overview, not an emergency."""
    fact = ev.facts.complications.get("cord-compression")
    when = latest_date(fact)
    if fact is None or when is None or ev.now - when <= T.CORD_COMPRESSION_CURRENT:
        return None
    return Evidence(f"spinal cord compression recorded {fmt_date(when)} (over "
                    f"{T.CORD_COMPRESSION_CURRENT.days} days ago, no new sign: history)", tuple(fact.refs))


def overview_history(ev: Evaluation) -> list[Evidence]:
    """Past events the overview names although no card fires for them."""
    return [e for e in (cord_compression_history(ev),) if e is not None]


def cord_compression_risk(ev: Evaluation, _: str | None) -> Findings:
    f = ev.facts
    found: list[Evidence] = []
    direct = f.complications.get("cord-compression")
    if direct is not None:
        when = latest_date(direct)
        # Undated is read as current: the safer reading.
        if when is None or ev.now - when <= T.CORD_COMPRESSION_CURRENT:
            found.append(Evidence(f"spinal cord compression on record ({fmt_date(when)})", tuple(direct.refs)))
    bone = site_evidence(ev, "bone")
    back = f.complications.get("back-pain")
    if bone is not None and back is not None and f.recent(latest_date(back), f.acute_window):
        found += [bone, Evidence(f"back pain recorded {fmt_date(latest_date(back))}", tuple(back.refs))]
    deficit = f.complications.get("neuro-deficit")
    # A new neurological deficit is read as possible cord compression with bone metastases, and also when no
    # bone or brain metastasis explains it (safer reading: imaging decides).
    if deficit is not None and f.recent(latest_date(deficit), f.acute_window) \
            and (bone is not None or not f.has_site("brain")):
        if bone is not None and bone not in found:
            found.append(bone)
        found.append(Evidence(f"new neurological deficit recorded {fmt_date(latest_date(deficit))}",
                              tuple(deficit.refs)))
    return found or None


def hypercalcaemia(ev: Evaluation, _: str | None) -> Findings:
    ca = ev.calcium
    if ca is not None and ca.high:
        return [Evidence(f"{ca.describe()} on {fmt_date(ca.when)}", ca.refs)]
    if ca is None:
        fact = ev.facts.complications.get("hypercalcaemia")
        if fact is not None and (fact.first is None or ev.facts.recent(fact.first, ev.facts.acute_window)):
            return [complication_evidence("hypercalcaemia", fact)]
    return None


def hypercalcaemia_symptomatic(ev: Evaluation) -> Evidence | None:
    """Vomiting / nausea recorded in the acute window alongside a raised calcium: the card treats it as
    symptomatic (clinical-rules section 5: critical when above 3.0 mmol/L or symptomatic)."""
    fact = ev.facts.complications.get("nausea")
    if fact is None or not ev.facts.recent(latest_date(fact), ev.facts.acute_window):
        return None
    return Evidence(f"nausea / vomiting recorded {fmt_date(latest_date(fact))}", tuple(fact.refs))


def hypercalcaemia_severe(ev: Evaluation) -> bool:
    ca = ev.calcium
    if ca is None:
        return True  # coded hypercalcaemia with no value in the window: the safer reading
    return ca.severe or hypercalcaemia_symptomatic(ev) is not None


def severe_hypercalcaemia(ev: Evaluation, arg: str | None) -> Findings:
    if hypercalcaemia(ev, arg) is None or not hypercalcaemia_severe(ev):
        return None
    symptom = hypercalcaemia_symptomatic(ev)
    return [symptom] if symptom is not None else []


def bowel_obstruction(ev: Evaluation, _: str | None) -> Findings:
    return any_of(complication_on_record(ev, "bowel-obstruction"))
