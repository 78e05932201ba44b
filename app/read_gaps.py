"""The fetch layer's problems as typed gaps (app.clinical.gaps), and the data-incomplete card's summary.

The summary is built from the gaps to fit the card's summary limit (cds_hooks.cards.SUMMARY_MAX) instead of being
cut, which is why it is rendered here, above the clinical code: that knows no protocol limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from app.clinical.evaluation import Evaluation
from app.clinical.gaps import ReadGap, nothing_readable, type_label
from cds_hooks.cards import SUMMARY_MAX
from cds_hooks.fallback import FetchProblem

__all__ = ["READ_GAP_VALUES", "gaps_from_problems", "gaps_summary"]

_ID_MAX = 64  # a FHIR id is at most 64 characters; anything longer from the wire is shortened

# short cause for the summary line
_CAUSE_SHORT = {
    "dns": "DNS lookup failed", "refused": "connection refused", "tls": "TLS failure",
    "network": "no connection", "timeout": "no answer in time", "malformed": "invalid FHIR JSON",
    "operation-outcome": "error reported", "paging-loop": "paging looped", "too-many-pages": "too many pages",
    "first-page-only": "first page only", "missing": "not sent", "not-resources": "invalid entries",
    "refused-url": "link not allowed", "too-many-resources": "too many resources",
}
_INCOMPLETE_KINDS = frozenset({"paging-loop", "too-many-pages", "incomplete", "refused-url", "too-many-resources"})


def _cause(problem: FetchProblem) -> str:
    if problem.kind == "incomplete":
        return "first-page-only"
    if problem.kind == "http" and problem.status is None:
        return problem.cause or "network"
    return problem.kind


def gaps_from_problems(problems: Iterable[FetchProblem], types: Mapping[str, str],
                       skipped: Mapping[str, int] | None = None, extra_skipped: int = 0) -> list[ReadGap]:
    """Gaps per (resource type, cause) from the resolver's problems (`types`: prefetch key -> resource type), its
    skipped-entry counts, and the entries without a resource under prefetch keys the service did not ask for."""
    merged: dict[tuple[str | None, str, int | None, str], int] = {}
    for p in problems:
        kind = "incomplete" if p.kind in _INCOMPLETE_KINDS else "unreadable"
        status = p.status if p.kind == "http" else None
        key: tuple[str | None, str, int | None, str] = (types.get(p.key, p.key), _cause(p), status, kind)
        merged[key] = merged.get(key, 0) + 1
    skips: list[tuple[str | None, int]] = [(types.get(k, k), n) for k, n in (skipped or {}).items()]
    for rtype, count in [*skips, (None, extra_skipped)]:
        if count > 0:
            key = (rtype, "not-resources", None, "incomplete")
            merged[key] = merged.get(key, 0) + count
    return [ReadGap(rtype, kind, cause, count, status) for (rtype, cause, status, kind), count in merged.items()]


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


def gaps_summary(gaps: Iterable[ReadGap], patient_id: str) -> str:
    """The data-incomplete card's summary, built to fit (never cut): an unreachable server first, then an
    unreadable Patient, then the resource types the fetch layer could not read, then what the fact pass found."""
    found = [g for g in gaps if g.kind != "unclassified"]
    fetched = [g for g in found if g.fetched]
    causes = {(g.cause, g.status) for g in fetched}
    if fetched and all(g.transport for g in fetched) and len(causes) == 1 and nothing_readable(fetched):
        if fetched[0].cause == "timeout":
            # some pages may have come before the deadline: say what is sure
            return "FHIR server did not answer in time: the record could not be checked, look at it directly"
        return (f"FHIR server unreachable ({_short_cause(fetched[0])}): nothing could be read, "
                "check the record directly")
    patient = next((g for g in fetched if g.resource_type == "Patient" and g.kind == "unreadable"), None)
    if patient is not None:
        return f"Patient {_short_id(patient_id)} could not be read from the FHIR server: {_short_cause(patient)}"
    tail = ": cards may be missing, check the record directly"
    if fetched:
        # one cause for everything: say which (e.g. "HTTP 410"); several: the detail lists them
        if len(causes) == 1:
            short = _short_cause(fetched[0])
            tail = f" ({'HTTP ' + short if short.isdigit() else short}){tail}"
        types = list(dict.fromkeys(type_label(g) for g in fetched))
        return f"Could not read {_type_list(types, SUMMARY_MAX - len('Could not read ') - len(tail))}{tail}"
    # the fact pass's gaps: one line each on the card (a type and a cause)
    n = len(found)
    what = "a resource" if n == 1 else f"{n} kinds of resources" if n else "part of the record"
    return f"Could not read {what} in the record{tail}"


def unreadable_summary(ev: Evaluation) -> str:
    """The `unreadable_summary` template key: the gaps' summary, or the first medication in no drug class when
    that is all that is missing (rules v2: it is what the clinician must check)."""
    unclassified = ev.facts.unclassified_medications
    if unclassified and all(g.kind == "unclassified" for g in ev.gaps):
        first = unclassified[0].label
        more = len(unclassified) - 1
        label = first if len(first) <= 40 else first[:39].rstrip() + "…"
        extra = f" (+{more} more)" if more else ""
        return f"Medication not recognised: '{label}'{extra}; no 'not on' claims or drug drafts rest on the list"
    return gaps_summary(ev.gaps, ev.patient_id)


# Registered with the clinical card values (app.service.knowledge); here because the summary must fit the limit.
READ_GAP_VALUES: Mapping[str, Callable[[Evaluation], str]] = {"unreadable_summary": unreadable_summary}
