"""Lenient FHIR date/dateTime parsing: bad or partial values give None or the earliest instant they denote."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_fhir_datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value or len(value) > 40:
        return None
    m = _DATE.match(value)
    try:
        if m:
            year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
            return datetime(year, month, day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def fmt_date(value: datetime | date | None) -> str:
    if value is None:
        return "date unknown"
    # isoformat() is several times faster than strftime, and this runs for every date on every card.
    return (value.date() if isinstance(value, datetime) else value).isoformat()
