"""Phase of disease (JCO OP 2021): acute, stable or unknown, with the evidence that decided it (A1-A6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from app.clinical.facts import COMPLICATION_LABELS, SITE_LABELS, PatientFacts
from app.clinical.fhirtime import fmt_date
from app.clinical.measures import CalciumFinding, latest_calcium
from app.clinical.thresholds import (
    DE_NOVO_POOR_DAYS,
    ECOG_POOR_MAX,
    ECOG_POOR_MIN,
    ECOG_WORSENING,
    KARNOFSKY_WORSENING,
    PAIN_RISE,
    PAIN_SEVERE,
    ecog_poor,
    karnofsky_poor,
)

PhaseName = Literal["acute", "stable", "unknown"]
EMERGENCY_COMPLICATIONS = ("cord-compression", "bowel-obstruction", "seizure", "hypercalcaemia")
ASSESSMENTS = ("pain-score", "ecog", "karnofsky", "distress", "phq9", "phq2", "gad7")


@dataclass(frozen=True, slots=True)
class PhaseEvidence:
    code: str                      # A1..A6
    text: str
    refs: tuple[str, ...]
    when: datetime | None


@dataclass(slots=True)
class Phase:
    name: PhaseName
    evidence: list[PhaseEvidence] = field(default_factory=list)
    pattern: str | None = None     # provisional progression pattern, never a certainty

    @property
    def started(self) -> datetime | None:
        dates = [e.when for e in self.evidence if e.when is not None]
        return min(dates) if dates else None


def _emergencies(facts: PatientFacts, calcium: CalciumFinding | None) -> list[PhaseEvidence]:
    found: list[PhaseEvidence] = []
    for name in EMERGENCY_COMPLICATIONS:
        fact = facts.complications.get(name)
        # An emergency with no date is treated as current: the safer reading.
        if fact and (fact.first is None or facts.recent(fact.first, facts.acute_window)):
            found.append(PhaseEvidence("A1", f"{COMPLICATION_LABELS[name]} ({fmt_date(fact.first)})",
                                       tuple(fact.refs), fact.first))
    if calcium is not None and calcium.high:
        found.append(PhaseEvidence("A1", f"{calcium.describe()} on {fmt_date(calcium.when)}",
                                   calcium.refs, calcium.when))
    return found


def determine_phase(facts: PatientFacts) -> Phase:
    window = facts.acute_window
    evidence = _emergencies(facts, latest_calcium(facts))

    for site, fact in facts.sites.items():
        if site in {"bone"} and any(s in facts.sites for s in ("spine", "long-bone")):
            continue  # reported once, under the more specific site
        if facts.recent(fact.first, window):
            evidence.append(PhaseEvidence("A2", f"new {SITE_LABELS[site]} metastasis ({fmt_date(fact.first)})",
                                          tuple(fact.refs), fact.first))
    for item in facts.progressing:
        if facts.recent(item.when, window):
            evidence.append(PhaseEvidence("A3", f"disease status progressing ({fmt_date(item.when)})",
                                          (item.ref,), item.when))
            break
    evidence.extend(_performance_evidence(facts))
    evidence.extend(_pain_evidence(facts))
    for enc in facts.unplanned_encounters:
        kind = "emergency" if enc.label == "EMER" else "inpatient"
        evidence.append(PhaseEvidence("A6", f"unplanned {kind} encounter ({fmt_date(enc.when)})",
                                      (enc.ref,), enc.when))

    if evidence:
        evidence.sort(key=lambda e: e.code)
        return Phase("acute", evidence, _pattern(facts))
    assessed = any(facts.latest(name, facts.assessment_window) for name in ASSESSMENTS)
    return Phase("stable" if assessed else "unknown", [], _pattern(facts))


def _performance_evidence(facts: PatientFacts) -> list[PhaseEvidence]:
    out: list[PhaseEvidence] = []
    window = facts.acute_window
    ecog = facts.latest("ecog", window)
    if ecog is not None:
        prev = facts.previous("ecog")
        if prev is not None and ecog.value - prev.value >= ECOG_WORSENING:
            out.append(PhaseEvidence(
                "A4", f"ECOG worsened {prev.value:g} -> {ecog.value:g} ({fmt_date(prev.when)} to "
                f"{fmt_date(ecog.when)})", (prev.ref, ecog.ref), ecog.when))
        elif ecog_poor(ecog.value):
            out.append(PhaseEvidence("A4", f"ECOG {ecog.value:g} ({fmt_date(ecog.when)})", (ecog.ref,), ecog.when))
    kps = facts.latest("karnofsky", window)
    if kps is not None:
        prev = facts.previous("karnofsky")
        if prev is not None and prev.value - kps.value >= KARNOFSKY_WORSENING:
            out.append(PhaseEvidence(
                "A4", f"Karnofsky fell {prev.value:g} -> {kps.value:g} ({fmt_date(kps.when)})",
                (prev.ref, kps.ref), kps.when))
        elif karnofsky_poor(kps.value):
            out.append(PhaseEvidence("A4", f"Karnofsky {kps.value:g} ({fmt_date(kps.when)})", (kps.ref,), kps.when))
    return out


def _pain_evidence(facts: PatientFacts) -> list[PhaseEvidence]:
    pain = facts.latest("pain-score", facts.acute_window)
    if pain is None:
        return []
    if PAIN_SEVERE <= pain.value <= 10:
        return [PhaseEvidence("A5", f"pain {pain.value:g}/10 ({fmt_date(pain.when)})", (pain.ref,), pain.when)]
    prev = facts.previous("pain-score")
    if prev is not None and pain.value - prev.value >= PAIN_RISE:
        return [PhaseEvidence("A5", f"pain up {prev.value:g} -> {pain.value:g}/10 ({fmt_date(pain.when)})",
                              (prev.ref, pain.ref), pain.when)]
    return []


def _pattern(facts: PatientFacts) -> str | None:
    """Provisional progression pattern; only 'de novo poor condition' is read off the record."""
    firsts = [s.first for s in facts.sites.values() if s.first is not None]
    if not firsts:
        return None
    first_met = min(firsts)
    for m in facts.series("ecog"):
        if ecog_poor(m.value) and abs((m.when - first_met).days) <= DE_NOVO_POOR_DAYS:
            return (f"de novo poor condition (provisional: ECOG {ECOG_POOR_MIN:g}-{ECOG_POOR_MAX:g} within "
                    f"{DE_NOVO_POOR_DAYS} days of the first metastasis)")
    return None
