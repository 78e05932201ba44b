"""Synthetic demo patients with metastatic breast cancer, as FHIR R4 transaction Bundles.

Each bundle in ``bundles/`` loads idempotently into any FHIR server (every entry is a ``PUT`` to a stable id
such as ``Patient/mbc-demo-01`` or ``Condition/mbc-demo-01-cond-1``). ``bundles/index.json`` lists them with a
title, a description of what a clinician should expect, and ``expected_rules`` (the sample author's reading of
clinical-rules.md at default settings; informative, not a test oracle).

Dates in the bundles are written relative to :data:`REFERENCE_NOW` (2026-11-20T10:00:00Z). Use
:func:`shift_dates` (or ``sample_bundle(id, now=...)``) to move them so that a demo always looks current:
"12 days ago" stays 12 days before ``now``.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "REFERENCE_NOW",
    "draft_orders",
    "list_drafts",
    "list_samples",
    "sample_bundle",
    "sample_ids",
    "shift_dates",
]

BUNDLE_DIR = Path(__file__).parent / "bundles"
DRAFT_DIR = Path(__file__).parent / "drafts"
REFERENCE_NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

# Keys whose value is a FHIR date, dateTime or instant that belongs to the clinical timeline.
# birthDate is deliberately absent: ages must not drift.
DATE_KEYS = frozenset({
    "onsetDateTime",
    "abatementDateTime",
    "recordedDate",
    "assertedDate",
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "authoredOn",
    "date",
    "occurrenceDateTime",
    "performedDateTime",
    "valueDateTime",
    "lastUpdated",
    "timestamp",
})
# Keys whose value is a FHIR Period: its start and end are shifted.
PERIOD_KEYS = frozenset({
    "period",
    "effectivePeriod",
    "occurrencePeriod",
    "onsetPeriod",
    "abatementPeriod",
    "performedPeriod",
    "validityPeriod",
    "valuePeriod",
})

_YEAR = re.compile(r"^\d{4}$")
_YEAR_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


@cache
def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((BUNDLE_DIR / "index.json").read_text(encoding="utf-8"))
    return manifest


@cache
def _raw_bundle(sample_id: str) -> dict[str, Any]:
    for item in _manifest()["samples"]:
        if item["id"] == sample_id:
            bundle: dict[str, Any] = json.loads((BUNDLE_DIR / item["file"]).read_text(encoding="utf-8"))
            return bundle
    raise KeyError(f"unknown sample {sample_id!r}; known: {', '.join(sample_ids())}")


def sample_ids() -> list[str]:
    """The sample ids (= Patient ids) in manifest order."""
    return [item["id"] for item in _manifest()["samples"]]


def list_samples(now: datetime | None = None) -> list[dict[str, Any]]:
    """All samples in manifest order: ``{id, title, description, expected_rules, bundle}``.

    ``bundle`` is a fresh copy (safe to modify); with ``now`` its dates are shifted as by :func:`shift_dates`.
    """
    return [
        {
            "id": item["id"],
            "title": item["title"],
            "description": item["description"],
            "expected_rules": list(item.get("expected_rules", [])),
            "bundle": sample_bundle(item["id"], now=now),
        }
        for item in _manifest()["samples"]
    ]


def sample_bundle(sample_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The transaction Bundle of one sample (a fresh copy); dates shifted to ``now`` when given.

    Raises ``KeyError`` for an unknown id.
    """
    bundle = copy.deepcopy(_raw_bundle(sample_id))
    if now is not None:
        return shift_dates(bundle, now)
    return bundle


@cache
def _draft_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((DRAFT_DIR / "index.json").read_text(encoding="utf-8"))
    return manifest


def list_drafts() -> list[dict[str, str]]:
    """Sample draft orders for order-select / order-sign: ``{id, title, description}`` in manifest order."""
    return [{k: item[k] for k in ("id", "title", "description")} for item in _draft_manifest()["drafts"]]


def draft_orders(draft_id: str, patient_id: str, now: datetime | None = None) -> dict[str, Any]:
    """A draftOrders Bundle for one patient (``{{patientId}}`` replaced), dates shifted to ``now`` when given.

    Raises ``KeyError`` for an unknown id."""
    item = next((d for d in _draft_manifest()["drafts"] if d["id"] == draft_id), None)
    if item is None:
        raise KeyError(f"unknown draft {draft_id!r}; known: {', '.join(d['id'] for d in list_drafts())}")
    text = (DRAFT_DIR / item["file"]).read_text(encoding="utf-8").replace("{{patientId}}", patient_id)
    bundle = json.loads(text)
    return shift_dates(bundle, now) if now is not None else bundle


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _shift_value(value: str, delta: timedelta, day_delta: int) -> str:
    match = _DATETIME.match(value)
    if match:
        seconds, fraction, zone = match.group(1), match.group(2), match.group(3)
        shifted = datetime.fromisoformat(value.replace("Z", "+00:00")) + delta  # keeps the original offset
        text = shifted.strftime("%Y-%m-%dT%H:%M")
        if seconds:
            text += shifted.strftime(":%S")
        if fraction:
            text += "." + f"{shifted.microsecond:06d}"[: len(fraction) - 1].ljust(len(fraction) - 1, "0")
        return text + zone
    if _DATE.match(value):
        return (date.fromisoformat(value) + timedelta(days=day_delta)).isoformat()
    if _YEAR_MONTH.match(value):
        return (date.fromisoformat(f"{value}-01") + timedelta(days=day_delta)).isoformat()[:7]
    if _YEAR.match(value):
        return (date.fromisoformat(f"{value}-01-01") + timedelta(days=day_delta)).isoformat()[:4]
    return value


def _shift_in_place(node: Any, delta: timedelta, day_delta: int) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in DATE_KEYS:
                node[key] = _shift_value(value, delta, day_delta)
            elif isinstance(value, dict) and key in PERIOD_KEYS:
                for edge in ("start", "end"):
                    if isinstance(value.get(edge), str):
                        value[edge] = _shift_value(value[edge], delta, day_delta)
                _shift_in_place(value, delta, day_delta)
            else:
                _shift_in_place(value, delta, day_delta)
    elif isinstance(node, list):
        for item in node:
            _shift_in_place(item, delta, day_delta)


def shift_dates(bundle: dict[str, Any], to: datetime, *, reference: datetime = REFERENCE_NOW) -> dict[str, Any]:
    """Return a copy of ``bundle`` with every clinical date moved by ``to - reference``.

    Shifted: onsetDateTime, abatementDateTime, recordedDate, effectiveDateTime, issued, authoredOn, date,
    occurrenceDateTime, ... and ``start`` / ``end`` of Periods (``period``, ``effectivePeriod``, ...).
    Not shifted: ``birthDate`` (ages stay as written). dateTime / instant values move by the exact
    difference (same precision and time-zone form: ``Z`` stays ``Z``); date-only values (and year or
    year-month values) move by the difference in calendar days between ``to`` and ``reference`` in UTC.
    A naive ``to`` is read as UTC. The input is not modified.
    """
    to_utc = _as_utc(to)
    ref_utc = _as_utc(reference)
    delta = to_utc - ref_utc
    day_delta = (to_utc.date() - ref_utc.date()).days
    out = copy.deepcopy(bundle)
    _shift_in_place(out, delta, day_delta)
    return out
