"""What could not be read for one evaluation, typed: one `ReadGap` per resource type and cause, from the fetch
layer (app.read_gaps turns its problems into gaps) and from the fact pass (app.clinical.facts), and the lines the
data-incomplete card and the overview evidence show for them.

A gap never carries server text or patient values: the lines are built here, from the type, the cause and the
count, so that an unreachable FHIR server gives one line ("Patient, Condition, ...: the FHIR server's name could
not be resolved (DNS)") instead of one per resource type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "NOT_A_RESOURCE", "NO_DRUG_CLASS", "NO_RESOURCE_TYPE", "RECORD_CAUSES", "UNREADABLE_STRUCTURE", "ReadGap",
    "gap_lines", "nothing_readable", "type_label", "unreadable_types",
]

# Causes the fact pass finds in resources the fetch layer delivered.
NOT_A_RESOURCE = "not-a-resource"
NO_RESOURCE_TYPE = "no-resource-type"
UNREADABLE_STRUCTURE = "unreadable-structure"
NO_DRUG_CLASS = "no-drug-class"
RECORD_CAUSES = frozenset({NOT_A_RESOURCE, NO_RESOURCE_TYPE, UNREADABLE_STRUCTURE, NO_DRUG_CLASS})

# fetch cause -> what happened, in a clinician's words (no server text)
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
_TRANSPORT = frozenset({"dns", "refused", "tls", "network", "timeout"})
# kinds that make an absence in the type unprovable ("unclassified" medications are read: medications_complete)
_UNREAD_KINDS = frozenset({"unreadable", "incomplete"})
# entries sent under prefetch keys the service did not ask for (their resource type is unknown)
_EXTRA_PREFETCH = "Extra prefetch data"


@dataclass(frozen=True, slots=True)
class ReadGap:
    """One resource type that could not be read in full, and why."""

    resource_type: str | None  # None: unknown (an entry without a resource type, or under a key not asked for)
    kind: str  # "unreadable" (nothing usable) | "incomplete" (only part) | "unclassified" (read, in no drug class)
    cause: str  # a fetch cause (a key of _CAUSE_TEXT, or "http" with `status`) or one of RECORD_CAUSES
    count: int = 1  # prefetch keys, skipped entries or resources affected
    status: int | None = None

    @property
    def transport(self) -> bool:
        """No answer at all from the FHIR server (as opposed to an answer that said no)."""
        return self.cause in _TRANSPORT

    @property
    def fetched(self) -> bool:
        """Found by the fetch layer (as opposed to the fact pass, in what it delivered)."""
        return self.cause not in RECORD_CAUSES


def type_label(gap: ReadGap) -> str:
    return gap.resource_type or _EXTRA_PREFETCH


def unreadable_types(gaps: Iterable[ReadGap]) -> frozenset[str]:
    """Resource types whose absence proves nothing (unreadable or incomplete). An entry of unknown type counts
    against none: charging it to every type would silence every absence claim for one stray value."""
    return frozenset(g.resource_type for g in gaps if g.kind in _UNREAD_KINDS and g.resource_type is not None)


def nothing_readable(gaps: Iterable[ReadGap]) -> bool:
    """Neither the Patient nor the Conditions could be read: no rule could be checked at all (not even
    whether the patient is in scope), which a clinician must not mistake for a quiet record."""
    kinds = {g.resource_type for g in gaps if g.kind == "unreadable"}
    return "Patient" in kinds or "Condition" in kinds


def _cause_text(gap: ReadGap) -> str:
    if gap.cause == "http":
        text = _HTTP_TEXT.get(gap.status or 0, "the FHIR server answered with an error")
        return f"{text} (HTTP {gap.status})" if gap.status else text
    if gap.cause == "not-resources":
        return f"{gap.count} Bundle {'entry' if gap.count == 1 else 'entries'} without a FHIR resource, skipped"
    return _CAUSE_TEXT.get(gap.cause, gap.cause)


def _record_text(gap: ReadGap) -> str:
    if gap.cause == NOT_A_RESOURCE:
        return "an entry that is not a FHIR resource"
    if gap.cause == NO_RESOURCE_TYPE:
        return "a resource without resourceType"
    return f"{type_label(gap)} with an unreadable structure"


def gap_lines(gaps: Iterable[ReadGap]) -> list[str]:
    """What could not be read, as the card says it: the fetch layer's gaps one line per cause (and HTTP status)
    naming every resource type it hit, then the fact pass's, one line per cause and type with its count.
    Unclassified medications are not here: the card names each with its label."""
    by_cause: dict[tuple[str, int | None, int], list[ReadGap]] = {}
    record: list[str] = []
    for g in gaps:
        if g.kind == "unclassified":
            continue
        if not g.fetched:
            record.append(f"{g.count} x {_record_text(g)}" if g.count > 1 else _record_text(g))
            continue
        # skipped-entry counts differ per type: they keep one line each
        extra = g.count if g.cause == "not-resources" else 0
        by_cause.setdefault((g.cause, g.status, extra), []).append(g)
    fetched = [f"{', '.join(dict.fromkeys(type_label(g) for g in group))}: {_cause_text(group[0])}"
               for group in by_cause.values()]
    return fetched + record
