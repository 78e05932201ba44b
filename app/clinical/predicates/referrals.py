"""Referrals: rehabilitation, end of life, social work, hospice, nutrition, distress, spiritual care."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.clinical import thresholds as T
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.facts import Measurement
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import Findings, any_of, complication_on_record
from app.clinical.predicates.phase import phase_signals
from app.clinical.predicates.symptoms import performance


def performance_fell(ev: Evaluation) -> Evidence | None:
    """ECOG up (or Karnofsky down) against the previous value in the assessment window."""
    f = ev.facts
    checks: tuple[tuple[str, Callable[[float, float], bool]], ...] = (
        ("ecog", lambda a, b: b > a), ("karnofsky", lambda a, b: b < a))
    for name, worse in checks:
        latest, prev = f.latest(name, f.assessment_window), f.previous(name)
        if latest is not None and prev is not None and worse(prev.value, latest.value):
            label = "ECOG" if name == "ecog" else "Karnofsky"
            return Evidence(f"{label} {prev.value:g} -> {latest.value:g} ({fmt_date(prev.when)} to "
                            f"{fmt_date(latest.when)})", (prev.ref, latest.ref))
    return None


def rehabilitation_indicated(ev: Evaluation, _: str | None) -> Findings:
    """Acute with ECOG 2+ (Karnofsky 60 or less); stable with ECOG 1-2 or a fall in performance status. Never a
    stable ECOG 0 patient, and not without a performance status (assessment-due asks for one)."""
    ecog, kps, evidence = performance(ev)
    if ev.phase.name == "acute":
        if (ecog is not None and ecog >= T.ECOG_REHAB_ACUTE_MIN) or \
                (ecog is None and kps is not None and kps <= T.KARNOFSKY_REHAB_ACUTE_MAX):
            return evidence
        return None
    fell = performance_fell(ev)
    if fell is not None:
        return [*evidence, fell]
    low, high = T.ECOG_REHAB_STABLE
    if ecog is not None and low <= ecog <= high:
        return evidence
    if ecog is None and kps is not None and T.KARNOFSKY_GOOD_MIN <= kps <= T.KARNOFSKY_REHAB_STABLE_MAX:
        return evidence
    return None


def end_of_life(ev: Evaluation, _: str | None) -> Findings:
    """Acute phase with ECOG 4 (Karnofsky 30 or less): comfort comes first (no dietitian push)."""
    if ev.phase.name != "acute":
        return None
    ecog, kps, evidence = performance(ev)
    if (ecog is not None and ecog >= T.ECOG_HOSPICE) or (ecog is None and kps is not None
                                                           and kps <= T.KARNOFSKY_HOSPICE_MAX):
        return evidence
    return None


def social_work_indicated(ev: Evaluation, _: str | None) -> Findings:
    found = phase_signals(ev) if ev.phase.name == "acute" else []
    concern = complication_on_record(ev, "financial-concern")
    if concern is not None:
        found.append(concern)
    return found or None


def hospice_indicated(ev: Evaluation, _: str | None) -> Findings:
    ecog, kps, evidence = performance(ev)
    if (ev.phase.name == "acute" and ecog == T.ECOG_HOSPICE) or (kps is not None and kps <= T.KARNOFSKY_HOSPICE_MAX):
        return evidence
    return None


def weight_loss_5(ev: Evaluation, _: str | None) -> Findings:
    w = ev.weight
    if w is None or w.percent < T.WEIGHT_LOSS_PERCENT:
        return None
    return [Evidence(f"weight {w.from_kg:.1f} -> {w.to_kg:.1f} kg ({w.percent:g} % loss, "
                     f"{fmt_date(w.since)} to {fmt_date(w.when)})", w.refs)]


DISTRESS_THRESHOLDS = (("distress", "distress thermometer", T.DISTRESS_THERMOMETER), ("phq9", "PHQ-9", T.PHQ9),
                       ("gad7", "GAD-7", T.GAD7), ("phq2", "PHQ-2", T.PHQ2))


@dataclass(frozen=True, slots=True)
class Screen:
    """A distress screen at or above its cut-off."""

    name: str          # observation name: distress, phq9, gad7, phq2
    label: str
    measurement: Measurement


def elevated_screens(ev: Evaluation) -> list[Screen]:
    """The latest distress screens of the acute window at or above their cut-offs."""
    found: list[Screen] = []
    for name, label, threshold in DISTRESS_THRESHOLDS:
        m = ev.facts.latest(name, ev.facts.acute_window)
        if m is not None and m.value >= threshold:
            found.append(Screen(name, label, m))
    return found


def distress_elevated(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"{s.label} {s.measurement.value:g} on {fmt_date(s.measurement.when)}", (s.measurement.ref,))
            for s in elevated_screens(ev)] or None


def spiritual_concern(ev: Evaluation, _: str | None) -> Findings:
    return any_of(complication_on_record(ev, "spiritual-concern"))
