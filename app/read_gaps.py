"""Typed gaps in what the service could read for one hook call, and the words the data-incomplete card uses.

A gap is structured (resource type, kind, cause, count, HTTP status), never free server text: the card groups
gaps by cause, so an unreachable FHIR server gives one line ("the FHIR server's name could not be resolved
(DNS): Patient, Condition, ...") instead of one line per resource type, and the summary is built to fit the
140-character limit instead of being cut. The fields match `DataGap` of app.clinical.facts (resource_type,
kind, count, cause), plus the HTTP status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the clinical evaluation carries ReadGaps and must not pull in the HTTP fetch layer
    from cds_hooks.fallback import FetchProblem

__all__ = [
    "ReadGap", "describe_gaps", "gaps_from_problems", "gaps_summary", "nothing_readable", "unreadable_types",
]

SUMMARY_MAX = 139
_ID_MAX = 64  # a FHIR id is at most 64 characters; anything longer from the wire is shortened

# cause -> what happened, in a clinician's words (no server text)
_CAUSE_TEXT = {
    "dns": "the FHIR server's name could not be resolved (DNS)",
    "refused": "the FHIR server refused the connection",
    "tls": "the secure connection to the FHIR server failed (TLS)",
    "network": "the FHIR server could not be reached",
    "timeout": "the FHIR server did not answer in time",
    "malformed": "the data was not valid FHIR JSON",
    "operation-outcome": "the EHR or FHIR server reported an error",
    "paging-loop": "the FHIR server's paging looped; only the first pages were read",
    "too-many-pages": "too many pages; only the first pages were read",
    "first-page-only": "only the first page was sent and there is no FHIR server to read the rest from",
    "missing": "not sent and no FHIR server to read it from",
    "not-resources": "Bundle entries without a FHIR resource were skipped",
    # problem kinds of the outbound limits (issue 16)
    "refused-url": "a link led outside the allowed FHIR server; it was not followed",
    "too-many-resources": "more resources than the service reads for one hook; only the first were read",
}
_HTTP_TEXT = {
    401: "the FHIR server refused the access token",
    403: "the FHIR server refused access",
    404: "the FHIR server did not find it",
    429: "the FHIR server was busy",
}
# short cause for the summary line
_CAUSE_SHORT = {
    "dns": "DNS lookup failed", "refused": "connection refused", "tls": "TLS failure",
    "network": "no connection", "timeout": "no answer in time", "malformed": "invalid FHIR JSON",
    "operation-outcome": "error reported", "paging-loop": "paging looped", "too-many-pages": "too many pages",
    "first-page-only": "first page only", "missing": "not sent", "not-resources": "invalid entries",
    "refused-url": "link not allowed", "too-many-resources": "too many resources",
}
_TRANSPORT = frozenset({"dns", "refused", "tls", "network", "timeout"})
_INCOMPLETE_KINDS = frozenset({"paging-loop", "too-many-pages", "incomplete", "refused-url", "too-many-resources"})


@dataclass(frozen=True, slots=True)
class ReadGap:
    """One resource type that could not be read in full, and why."""

    resource_type: str
    kind: str  # "unreadable" (nothing usable from it) | "incomplete" (only part of it)
    cause: str  # a key of _CAUSE_TEXT, or "http" with `status`
    count: int = 1  # prefetch keys (or skipped entries) affected
    status: int | None = None

    @property
    def transport(self) -> bool:
        """No answer at all from the FHIR server (as opposed to an answer that said no)."""
        return self.cause in _TRANSPORT


def _cause(problem: FetchProblem) -> str:
    if problem.kind == "incomplete":
        return "first-page-only"
    if problem.kind == "http" and problem.status is None:
        return problem.cause or "network"
    return problem.kind


def gaps_from_problems(problems: Iterable[FetchProblem], types: Mapping[str, str],
                       skipped: Mapping[str, int] | None = None) -> list[ReadGap]:
    """Gaps per (resource type, cause) from the resolver's problems (`types`: prefetch key -> resource type)
    and its skipped-entry counts."""
    merged: dict[tuple[str, str, int | None, str], int] = {}
    for p in problems:
        kind = "incomplete" if p.kind in _INCOMPLETE_KINDS else "unreadable"
        status = p.status if p.kind == "http" else None
        k = (types.get(p.key, p.key), _cause(p), status, kind)
        merged[k] = merged.get(k, 0) + 1
    for key, count in (skipped or {}).items():
        if count > 0:
            k = (types.get(key, key), "not-resources", None, "incomplete")
            merged[k] = merged.get(k, 0) + count
    return [ReadGap(rtype, kind, cause, count, status) for (rtype, cause, status, kind), count in merged.items()]


def _cause_text(gap: ReadGap) -> str:
    if gap.cause == "http":
        text = _HTTP_TEXT.get(gap.status or 0, "the FHIR server answered with an error")
        return f"{text} (HTTP {gap.status})" if gap.status else text
    text = _CAUSE_TEXT.get(gap.cause, gap.cause)
    if gap.cause == "not-resources":
        return f"{gap.count} Bundle {'entry' if gap.count == 1 else 'entries'} without a FHIR resource, skipped"
    return text


def _types(gaps: Iterable[ReadGap]) -> list[str]:
    return list(dict.fromkeys(g.resource_type for g in gaps))


def describe_gaps(gaps: Iterable[ReadGap]) -> list[str]:
    """One line per cause (and HTTP status), naming every resource type it hit."""
    by_cause: dict[tuple[str, int | None, int], list[ReadGap]] = {}
    for g in gaps:
        # skipped-entry counts differ per type: they keep one line each
        extra = g.count if g.cause == "not-resources" else 0
        by_cause.setdefault((g.cause, g.status, extra), []).append(g)
    return [f"{', '.join(_types(group))}: {_cause_text(group[0])}" for group in by_cause.values()]


def unreadable_types(gaps: Iterable[ReadGap]) -> frozenset[str]:
    """Resource types whose absence proves nothing (unreadable or incomplete)."""
    return frozenset(g.resource_type for g in gaps)


def _patient_gap(gaps: Iterable[ReadGap]) -> ReadGap | None:
    return next((g for g in gaps if g.resource_type == "Patient" and g.kind == "unreadable"), None)


def nothing_readable(gaps: Iterable[ReadGap]) -> bool:
    """Neither the Patient nor the Conditions could be read: no rule could be checked at all (not even
    whether the patient is in scope), which a clinician must not mistake for a quiet record."""
    kinds = {g.resource_type for g in gaps if g.kind == "unreadable"}
    return "Patient" in kinds or "Condition" in kinds


def _short_cause(gap: ReadGap) -> str:
    if gap.cause == "http":
        return str(gap.status) if gap.status else "HTTP error"
    return _CAUSE_SHORT.get(gap.cause, gap.cause)


def _short_id(patient_id: str) -> str:
    return patient_id if len(patient_id) <= _ID_MAX else patient_id[: _ID_MAX - 1] + "…"


def _type_list(types: list[str], room: int) -> str:
    """'A', 'A and B', 'A, B and C', or 'A, B and 4 more resource types' to fit `room` characters."""
    for shown in range(len(types), 0, -1):
        head, rest = types[:shown], len(types) - shown
        if rest:
            text = f"{', '.join(head)} and {rest} more resource type{'s' if rest > 1 else ''}"
        elif len(head) > 1:
            text = f"{', '.join(head[:-1])} and {head[-1]}"
        else:
            text = head[0]
        if len(text) <= room:
            return text
    return f"{len(types)} resource types"


def gaps_summary(gaps: list[ReadGap], patient_id: str, notes: list[str] | None = None) -> str:
    """The data-incomplete card's summary, built to fit (never cut): an unreachable server first, then an
    unreadable Patient, then the resource types."""
    causes = {(g.cause, g.status) for g in gaps}
    if gaps and all(g.transport for g in gaps) and len(causes) == 1 and nothing_readable(gaps):
        if gaps[0].cause == "timeout":
            # some pages may have come before the deadline: say what is sure
            return "FHIR server did not answer in time: the record could not be checked, look at it directly"
        return f"FHIR server unreachable ({_short_cause(gaps[0])}): nothing could be read, check the record directly"
    patient = _patient_gap(gaps)
    if patient is not None:
        return f"Patient {_short_id(patient_id)} could not be read from the FHIR server: {_short_cause(patient)}"
    tail = ": cards may be missing, check the record directly"
    if gaps:
        # one cause for everything: say which (e.g. "HTTP 410"); several: the detail lists them
        if len(causes) == 1:
            short = _short_cause(gaps[0])
            tail = f" ({'HTTP ' + short if short.isdigit() else short}){tail}"
        return f"Could not read {_type_list(_types(gaps), SUMMARY_MAX - len('Could not read ') - len(tail))}{tail}"
    n = len(notes or [])
    what = "a resource" if n == 1 else f"{n} kinds of resources" if n else "part of the record"
    return f"Could not read {what} in the record{tail}"
