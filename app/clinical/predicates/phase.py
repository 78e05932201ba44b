"""Phase, missing assessments, unreadable data and what the overview says about them."""

from __future__ import annotations

from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.facts import SITE_LABELS, Dated
from app.clinical.fhirtime import fmt_date
from app.clinical.gaps import gap_lines
from app.clinical.predicates.base import Findings, newest, observations_unread, unclassified_evidence


def phase_signals(ev: Evaluation) -> list[Evidence]:
    """The acute-phase signals (A1-A6) found, each under its code."""
    return [Evidence(f"{e.code}: {e.text}", e.refs) for e in ev.phase.evidence]


def always(ev: Evaluation, _: str | None) -> Findings:
    return []


def acute_phase(ev: Evaluation, _: str | None) -> Findings:
    return phase_signals(ev) if ev.phase.name == "acute" else None


def stable_phase(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"stable phase: no acute signal in {ev.facts.acute_window.days} days, assessed in "
                     f"{ev.facts.assessment_window.days} days")] \
        if ev.phase.name == "stable" else None


def unknown_phase(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"phase unknown: no symptom or performance assessment in {ev.facts.assessment_window.days} "
                     "days")] \
        if ev.phase.name == "unknown" else None


def stable_or_unknown_phase(ev: Evaluation, arg: str | None) -> Findings:
    return stable_phase(ev, arg) or unknown_phase(ev, arg)


ASSESSMENT_KINDS = ("pain", "distress", "performance", "phase", "progression")
DISTRESS_SCREENS = ("distress", "phq9", "phq2", "gad7")
_PROGRESS_OBS = ("pain-score", "ecog", "karnofsky", *DISTRESS_SCREENS)


def _progression_event(ev: Evaluation) -> Dated | None:
    """The latest progression event in the assessment window: a new metastatic site or disease status
    'progressing' (clinical-rules section 5: assessment at diagnosis, progression, treatment change)."""
    f, window = ev.facts, ev.facts.assessment_window
    events = [Dated(ref=fact.refs[0] if fact.refs else "", when=fact.first, label=f"new {SITE_LABELS[site]} metastasis")
              for site, fact in f.sites.items() if fact.first is not None and f.recent(fact.first, window)]
    events += [Dated(ref=i.ref, when=i.when, label="disease status progressing")
               for i in f.progressing if i.when is not None and f.recent(i.when, window)]
    return newest(events)


def missing_assessment_evidence(ev: Evaluation) -> dict[str, Evidence]:
    """Each missing assessment (kind -> why), in the order of the rules text; windows come from the settings."""
    f = ev.facts
    acute, assess = f.acute_window, f.assessment_window
    out: dict[str, Evidence] = {}
    if f.latest("pain-score", acute) is None:
        last = f.latest("pain-score")
        when = f"last {fmt_date(last.when)}" if last else "never recorded"
        out["pain"] = Evidence(f"no 0-10 pain score in {acute.days} days ({when})", (last.ref,) if last else ())
    if all(f.latest(n, acute) is None for n in DISTRESS_SCREENS):
        out["distress"] = Evidence(f"no distress screen (distress thermometer, PHQ-9 / PHQ-2, GAD-7) in "
                                   f"{acute.days} days")
    if f.latest("ecog", assess) is None and f.latest("karnofsky", assess) is None:
        out["performance"] = Evidence(f"no performance status (ECOG / Karnofsky) in {assess.days} days")
    if ev.phase.name == "unknown":
        out["phase"] = Evidence(f"phase unknown: no symptom or performance assessment in {assess.days} days")
    event = _progression_event(ev)
    if event is not None and event.when is not None:
        since = [m for n in _PROGRESS_OBS for m in f.series(n) if m.when >= event.when]
        if not since:
            out["progression"] = Evidence(f"{event.label} ({fmt_date(event.when)}) with no assessment since",
                                          (event.ref,) if event.ref else ())
    return out


def missing_assessments(ev: Evaluation) -> list[str]:
    return [e.text for e in missing_assessment_evidence(ev).values()]


def assessments_missing(ev: Evaluation, _: str | None) -> Findings:
    if observations_unread(ev):
        return None
    return list(missing_assessment_evidence(ev).values()) or None


def assessment_missing(ev: Evaluation, arg: str | None) -> Findings:
    if observations_unread(ev):
        return None
    found = missing_assessment_evidence(ev).get(arg or "")
    return [found] if found is not None else None


def read_gap_evidence(ev: Evaluation) -> list[Evidence]:
    """One line per gap the fetch layer or the fact pass found (unclassified medications apart)."""
    return [Evidence(f"could not be read: {line}") for line in gap_lines(ev.gaps)]


def data_incomplete(ev: Evaluation, _: str | None) -> Findings:
    return read_gap_evidence(ev) + unclassified_evidence(ev) or None


# -- the overview and scope -------------------------------------------------------------------------------
_ASSESSMENT_LABELS = {"pain-score": "pain", "ecog": "ECOG", "karnofsky": "Karnofsky", "distress": "distress",
                      "phq9": "PHQ-9", "phq2": "PHQ-2", "gad7": "GAD-7"}
# the resource types that hold the acute-phase signals (A1-A6) and the assessments
_PHASE_TYPES = frozenset({"Condition", "Observation", "Encounter"})


def phase_basis(ev: Evaluation) -> list[Evidence]:
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


def scope_unreadable(ev: Evaluation) -> bool:
    """Scope cannot be ruled out when the Patient or the Conditions could not be read (in full)."""
    return bool({"Condition", "Patient"} & ev.unreadable_types)
