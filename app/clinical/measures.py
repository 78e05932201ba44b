"""Derived measures: albumin-corrected calcium and weight trend, with their units kept explicit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.clinical.facts import Measurement, PatientFacts
from app.clinical.thresholds import (
    ALBUMIN_PAIRING,
    ALBUMIN_REFERENCE,
    CALCIUM_CORRECTION_PER_ALBUMIN,
    HYPERCALCAEMIA,
    HYPERCALCAEMIA_SEVERE,
)

MGDL_PER_MMOLL = 4.008


def _calcium_unit(unit: str) -> str | None:
    u = unit.strip().lower().replace(" ", "")
    if u in {"mmol/l", "mmol/litre", "mmol/liter"}:
        return "mmol/L"
    if u in {"mg/dl", "mg/100ml"}:
        return "mg/dL"
    return None


def _albumin_g_per_l(m: Measurement) -> float | None:
    u = m.unit.strip().lower().replace(" ", "")
    if u in {"g/l", "g/litre"}:
        return m.value
    if u in {"g/dl", "g/100ml"}:
        return m.value * 10
    return None


@dataclass(frozen=True, slots=True)
class CalciumFinding:
    value: float          # in `unit`, albumin-corrected when `corrected`
    unit: str             # "mmol/L" or "mg/dL", as reported
    corrected: bool
    when: datetime
    refs: tuple[str, ...]

    @property
    def mmol(self) -> float:
        return self.value if self.unit == "mmol/L" else self.value / MGDL_PER_MMOLL

    @property
    def mgdl(self) -> float:
        return self.value if self.unit == "mg/dL" else self.value * MGDL_PER_MMOLL

    @property
    def high(self) -> bool:
        # Compared in the unit it was reported in, so that 10.4 mg/dL is not pushed over 2.6 mmol/L by rounding.
        return self.value > HYPERCALCAEMIA[self.unit]

    @property
    def severe(self) -> bool:
        return self.value > HYPERCALCAEMIA_SEVERE[self.unit]

    def describe(self) -> str:
        kind = "corrected calcium" if self.corrected else "calcium"
        return f"{kind} {self.mmol:.2f} mmol/L ({self.mgdl:.1f} mg/dL)"


def latest_calcium(facts: PatientFacts) -> CalciumFinding | None:
    """The most recent calcium in the acute window, albumin-corrected when an albumin lies within
    ALBUMIN_PAIRING."""
    window = facts.acute_window
    direct = facts.latest("corrected-calcium", window)
    total = facts.latest("calcium", window)
    candidates = [m for m in (direct, total) if m is not None and _calcium_unit(m.unit)]
    if not candidates:
        return None
    # A reported corrected value wins over a total value taken at the same time.
    chosen = max(candidates, key=lambda m: (m.when, m is direct))
    return _calcium_finding(facts, chosen, reported_corrected=chosen is direct)


def _calcium_finding(facts: PatientFacts, m: Measurement, *, reported_corrected: bool) -> CalciumFinding | None:
    """One calcium value, albumin-corrected when it is a total calcium with an albumin within
    ALBUMIN_PAIRING."""
    unit = _calcium_unit(m.unit)
    if unit is None:
        return None
    if reported_corrected:
        return CalciumFinding(m.value, unit, True, m.when, (m.ref,))
    albumin = _nearest(facts.series("albumin"), m.when, ALBUMIN_PAIRING)
    alb = _albumin_g_per_l(albumin) if albumin else None
    if albumin is None or alb is None:
        return CalciumFinding(m.value, unit, False, m.when, (m.ref,))
    albumin_in_unit = alb if unit == "mmol/L" else alb / 10.0   # g/L, or g/dL beside mg/dL
    value = m.value + CALCIUM_CORRECTION_PER_ALBUMIN[unit] * (ALBUMIN_REFERENCE[unit] - albumin_in_unit)
    return CalciumFinding(round(value, 3), unit, True, m.when, (m.ref, albumin.ref))


def calcium_series(facts: PatientFacts) -> list[CalciumFinding]:
    """Every calcium on record, oldest first, corrected as `latest_calcium` corrects the latest one.

    Where a reported corrected calcium and a total calcium share an instant, only the reported one is kept.
    """
    found: dict[datetime, CalciumFinding] = {}
    for m in facts.series("calcium"):
        if (f := _calcium_finding(facts, m, reported_corrected=False)) is not None:
            found[m.when] = f
    for m in facts.series("corrected-calcium"):
        if (f := _calcium_finding(facts, m, reported_corrected=True)) is not None:
            found[m.when] = f
    return [found[when] for when in sorted(found)]


def _nearest(series: list[Measurement], when: datetime, within: timedelta) -> Measurement | None:
    best: Measurement | None = None
    for m in series:
        gap = abs(m.when - when)
        if gap <= within and (best is None or gap < abs(best.when - when)):
            best = m
    return best


def kilograms(m: Measurement) -> float | None:
    u = m.unit.strip().lower()
    if u in {"kg", "kilogram", "kilograms"}:
        return m.value
    if u in {"[lb_av]", "lb", "lbs", "pound", "pounds"}:
        return m.value * 0.45359237
    if u in {"g"}:
        return m.value / 1000
    return None


@dataclass(frozen=True, slots=True)
class WeightLoss:
    percent: float
    from_kg: float
    to_kg: float
    since: datetime
    when: datetime
    refs: tuple[str, ...]


def weight_loss(facts: PatientFacts) -> WeightLoss | None:
    """Loss from the highest weight in the assessment window before the latest weight, if the latest is recent."""
    weighed = [(m, kilograms(m)) for m in facts.series("body-weight")]
    series = [(m, kg) for m, kg in weighed if kg is not None and kg > 0]
    if len(series) < 2:
        return None
    latest, latest_kg = series[-1]
    if not facts.recent(latest.when, facts.assessment_window):
        return None
    earlier = [(m, kg) for m, kg in series[:-1] if latest.when - facts.assessment_window <= m.when < latest.when]
    if not earlier:
        return None
    ref_m, ref_kg = max(earlier, key=lambda pair: pair[1])
    percent = (ref_kg - latest_kg) / ref_kg * 100
    return WeightLoss(round(percent, 1), ref_kg, latest_kg, ref_m.when, latest.when, (ref_m.ref, latest.ref))
