"""A patient's course as plain JSON, read off the same PatientFacts the rules use (no second reading).

`build_timeline(facts)` gives measurement series (pain, ECOG, Karnofsky, corrected calcium, weight), the
first-seen date of each metastatic site, treatments, unplanned encounters and complications as events, and
acute / stable / unknown phase bands. Every point and event carries the reference of the resource it came from.

Phase bands come from `determine_phase` itself, run on the facts as they stood at each instant where the
answer can change (a fact appears, or leaves the acute or assessment window); the last band is the phase the
cards were built on.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from app.clinical import thresholds as T
from app.clinical.facts import (
    COMPLICATION_LABELS,
    SITE_LABELS,
    TREATMENT_LABELS,
    Measurement,
    PatientFacts,
    SiteFact,
)
from app.clinical.measures import calcium_series, kilograms
from app.clinical.phase import determine_phase

DRUG_CLASS_LABELS: dict[str, str] = {
    "non-opioid-analgesic": "non-opioid analgesic", "weak-opioid": "weak opioid", "strong-opioid": "strong opioid",
    "laxative": "laxative", "corticosteroid": "corticosteroid", "anticonvulsant": "anticonvulsant",
    "bone-modifying-agent": "bone-modifying agent", "antiemetic": "antiemetic", "antidepressant": "antidepressant",
}
# Fixed axes for scores, so that two patients' charts read the same way; measured values get data-driven axes.
_SCORE_SERIES: tuple[tuple[str, str, str, float, float, float | None], ...] = (
    # key, label, unit, min, max, threshold drawn as a line (the value the rules treat as a signal)
    ("pain-score", "Pain score", "/10", 0, 10, T.PAIN_SEVERE),
    ("ecog", "ECOG", "", 0, 4, T.ECOG_POOR_MIN),
    ("karnofsky", "Karnofsky", "%", 0, 100, T.KARNOFSKY_POOR_MAX),
)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _point(when: datetime, value: float, refs: tuple[str, ...] | list[str], **extra: Any) -> dict[str, Any]:
    return {"t": _iso(when), "value": round(value, 2), "ref": refs[0], "refs": list(refs), **extra}


def _score_series(facts: PatientFacts) -> list[dict[str, Any]]:
    out = []
    for key, label, unit, low, high, threshold in _SCORE_SERIES:
        points = [_point(m.when, m.value, (m.ref,)) for m in facts.series(key)]
        series: dict[str, Any] = {"key": key, "label": label, "unit": unit, "min": low, "max": high,
                                  "points": points}
        if threshold is not None:
            series["threshold"] = threshold
        out.append(series)
    return out


def _calcium(facts: PatientFacts) -> dict[str, Any]:
    points = [_point(f.when, f.mmol, f.refs, corrected=f.corrected) for f in calcium_series(facts)]
    values = [p["value"] for p in points]
    return {"key": "corrected-calcium", "label": "Corrected calcium", "unit": "mmol/L",
            "min": math.floor(min([2.0, *values]) * 10) / 10, "max": math.ceil(max([3.2, *values]) * 10) / 10,
            "threshold": T.HYPERCALCAEMIA["mmol/L"], "points": points}


def _weight(facts: PatientFacts) -> dict[str, Any]:
    points = []
    for m in facts.series("body-weight"):
        kg = kilograms(m)
        if kg is not None and kg > 0:
            points.append(_point(m.when, kg, (m.ref,)))
    values = [p["value"] for p in points]
    low, high = (min(values), max(values)) if values else (40.0, 80.0)
    pad = max(2.0, (high - low) * 0.15)
    return {"key": "body-weight", "label": "Weight", "unit": "kg", "min": math.floor(low - pad),
            "max": math.ceil(high + pad), "points": points}


def _first_ref(fact: SiteFact, dated: dict[str, datetime | None]) -> str:
    """The resource that saw the site first (the fact keeps every resource, not which one was earliest)."""
    return min(fact.refs, key=lambda ref: (dated.get(ref) is None, dated.get(ref) or fact.first or datetime.max))


def _sites(facts: PatientFacts) -> list[dict[str, Any]]:
    dated = {d.ref: d.when for d in facts.metastasis}
    out = []
    for key, fact in facts.sites.items():
        item: dict[str, Any] = {"key": key, "label": SITE_LABELS.get(key, key), "ref": _first_ref(fact, dated),
                                "refs": list(fact.refs)}
        if fact.first is not None:
            item["first"] = _iso(fact.first)
        out.append(item)
    out.sort(key=lambda s: (s.get("first") is None, s.get("first") or ""))
    return out


def _events(facts: PatientFacts) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for cls, uses in facts.drugs.items():
        for use in uses:
            if use.when is not None:
                events.append({"kind": "treatment", "t": _iso(use.when), "ref": use.ref,
                               "label": f"{use.name} ({DRUG_CLASS_LABELS.get(cls, cls)})"})
    # Procedures and treatment requests (radiotherapy, fixation, drainage...), where the facts hold them.
    for kind, items in facts.treatments.items():
        for item in items:
            if item.when is not None:
                events.append({"kind": "treatment", "t": _iso(item.when), "ref": item.ref,
                               "label": TREATMENT_LABELS.get(kind, kind)})
    for enc in facts.unplanned_encounters:
        if enc.when is not None:
            kind = "emergency visit" if enc.label == "EMER" else "unplanned admission"
            events.append({"kind": "admission", "t": _iso(enc.when), "ref": enc.ref, "label": kind})
    for key, fact in facts.complications.items():
        if fact.first is not None:
            events.append({"kind": "complication", "t": _iso(fact.first), "ref": fact.refs[0],
                           "label": COMPLICATION_LABELS.get(key, key)})
    events.sort(key=lambda e: (e["t"], e["kind"], e["label"]))
    return events


def _when(m: Measurement) -> datetime:
    return m.when


def facts_as_of(facts: PatientFacts, when: datetime) -> PatientFacts:
    """The facts as they stood at `when`: later (and undated) findings left out, windows measured from `when`."""
    def seen(t: datetime | None) -> bool:
        return t is not None and t <= when

    def sites(items: dict[str, SiteFact]) -> dict[str, SiteFact]:
        return {k: v for k, v in items.items() if seen(v.first)}

    return replace(
        facts, now=when,
        sites=sites(facts.sites), complications=sites(facts.complications),
        # Series are sorted by time: a bisect and a slice, not a scan (this runs once per phase change point).
        observations={k: v[:bisect_right(v, when, key=_when)] for k, v in facts.observations.items()},
        progressing=[d for d in facts.progressing if seen(d.when)],
        # The builder kept only encounters recent at the real `now`; recency is re-applied for `when`.
        unplanned_encounters=[d for d in facts.unplanned_encounters
                              if d.when is not None and when - facts.acute_window <= d.when <= when],
    )


def _fact_dates(facts: PatientFacts) -> list[datetime]:
    dates: list[datetime] = [m.when for series in facts.observations.values() for m in series]
    dates += [f.first for f in (*facts.sites.values(), *facts.complications.values()) if f.first is not None]
    dates += [d.when for d in (*facts.progressing, *facts.unplanned_encounters) if d.when is not None]
    return [d for d in dates if d <= facts.now]


def phase_bands(facts: PatientFacts, start: datetime) -> list[dict[str, Any]]:
    """Contiguous phase bands from `start` to `facts.now`; the last one is the phase the cards used."""
    changes = {start}
    # A fact counts while `now - window <= when`: it leaves the window just after when + window.
    just_after = timedelta(seconds=1)
    for d in _fact_dates(facts):
        for shift in (timedelta(0), facts.acute_window + just_after, facts.assessment_window + just_after):
            if start < d + shift < facts.now:
                changes.add(d + shift)
    instants = sorted(changes)
    names = [determine_phase(facts_as_of(facts, t)).name for t in instants[:-1]]
    # From the last change to now: the phase the cards were built on (undated findings count here only).
    names.append(determine_phase(facts).name)
    bands: list[dict[str, Any]] = []
    for t, name in zip(instants, names, strict=True):
        if bands and bands[-1]["phase"] == name:
            continue
        if bands:
            bands[-1]["end"] = _iso(t)
        bands.append({"phase": name, "start": _iso(t)})
    bands[-1]["end"] = _iso(facts.now)
    return bands


def build_timeline(facts: PatientFacts) -> dict[str, Any]:
    """The timeline JSON for one patient (see the module docstring); pure: no I/O, no clock."""
    series = [*_score_series(facts), _calcium(facts), _weight(facts)]
    sites = _sites(facts)
    events = _events(facts)
    dates = [datetime.fromisoformat(p["t"]) for s in series for p in s["points"]]
    dates += [datetime.fromisoformat(s["first"]) for s in sites if "first" in s]
    dates += [datetime.fromisoformat(e["t"]) for e in events]
    dates = [d for d in dates if d <= facts.now]
    start = min(dates) if dates else facts.now - facts.assessment_window
    # At least two weeks on screen, so a single day's findings do not fill the whole width.
    start = min(start, facts.now - timedelta(days=14))
    return {
        "patientId": facts.patient_id,
        "start": _iso(start),
        "end": _iso(facts.now),
        "phases": phase_bands(facts, start),
        "series": series,
        "sites": sites,
        "events": events,
    }

