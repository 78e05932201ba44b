"""The data the rules read, declared once as `Library.dataRequirement` (Library-mbc-cds-data-requirements.json).

One DataRequirement per resource type (per concept for Observations), with the search the service uses for it:
code filters as `codeFilter.searchParam` with a value set or fixed codes, and two extensions for what
DataRequirement cannot say: the CDS Hooks prefetch key (requirements sharing a key are one search, the union of
their code filters) and the search parameter that names the patient (absent on the Patient, which is read by id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plandefinitions.loader import (
    HERE,
    PATIENT_SEARCH_PARAM_URL,
    PREFETCH_KEY_URL,
    ArtifactError,
    Artifacts,
    read_artifact,
)

LIBRARY_ID = "mbc-cds-data-requirements"
SUBJECT_TYPE = "Patient"
_WHERE = f"Library/{LIBRARY_ID}"


@dataclass(frozen=True, slots=True)
class CodeFilter:
    search_param: str
    value_set: str | None  # canonical URL; its codes are OR'ed with `codes`
    codes: tuple[tuple[str | None, str], ...]  # (system, code); no system for a `code` element such as status


@dataclass(frozen=True, slots=True)
class DataRequirement:
    type: str
    prefetch_key: str | None  # None: read only when the record brings it
    patient_param: str | None  # None for the subject, which is read by id
    code_filters: tuple[CodeFilter, ...]


@dataclass(frozen=True, slots=True)
class PrefetchSearch:
    """One prefetch key: a read of the patient, or one search whose code filters are those of every requirement
    declared under the key, in declaration order."""

    key: str
    type: str
    patient_param: str | None
    code_filters: tuple[CodeFilter, ...]


@dataclass(frozen=True, slots=True)
class DataRequirements:
    requirements: tuple[DataRequirement, ...]
    prefetch: tuple[PrefetchSearch, ...]

    @property
    def types(self) -> tuple[str, ...]:
        """Every declared resource type, once, in declaration order."""
        return tuple(dict.fromkeys(r.type for r in self.requirements))


def _extension(element: dict[str, Any], url: str, where: str) -> str | None:
    values = [e.get("valueString") for e in element.get("extension") or [] if e.get("url") == url]
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str) or not values[0]:
        raise ArtifactError(f"{where}: {url} must appear once, with a non-empty valueString")
    return values[0]


def _code_filter(data: dict[str, Any], where: str) -> CodeFilter:
    param = data.get("searchParam")
    if not param or data.get("path"):
        raise ArtifactError(f"{where}: a codeFilter names the search parameter the service uses (searchParam), "
                            "not a path")
    codes = tuple((c.get("system"), c["code"]) for c in data.get("code") or [] if c.get("code"))
    if not codes and not data.get("valueSet"):
        raise ArtifactError(f"{where}: codeFilter on {param} has neither a valueSet nor codes")
    return CodeFilter(search_param=param, value_set=data.get("valueSet"), codes=codes)


def _requirement(data: dict[str, Any], where: str) -> DataRequirement:
    rtype = data["type"]
    key = _extension(data, PREFETCH_KEY_URL, where)
    param = _extension(data, PATIENT_SEARCH_PARAM_URL, where)
    filters = tuple(_code_filter(f, where) for f in data.get("codeFilter") or [])
    if rtype == SUBJECT_TYPE and (param or filters):
        raise ArtifactError(f"{where}: the {SUBJECT_TYPE} is read by id: no patient search parameter, no filters")
    if rtype != SUBJECT_TYPE and key and not param:
        raise ArtifactError(f"{where}: {rtype} under prefetch key {key!r} names no patient search parameter")
    return DataRequirement(type=rtype, prefetch_key=key, patient_param=param, code_filters=filters)


def _searches(requirements: tuple[DataRequirement, ...]) -> tuple[PrefetchSearch, ...]:
    by_key: dict[str, list[DataRequirement]] = {}
    for r in requirements:
        if r.prefetch_key:
            by_key.setdefault(r.prefetch_key, []).append(r)
    searches = []
    for key, group in by_key.items():
        first = group[0]
        params = {f.search_param for f in first.code_filters}
        for r in group[1:]:
            # A union of searches is one search only when they differ in nothing but the codes they OR together.
            if (r.type, r.patient_param, {f.search_param for f in r.code_filters}) != \
                    (first.type, first.patient_param, params):
                raise ArtifactError(f"{_WHERE}: the requirements under prefetch key {key!r} differ in type, patient "
                                    "search parameter or filtered search parameters")
        searches.append(PrefetchSearch(key=key, type=first.type, patient_param=first.patient_param,
                                       code_filters=tuple(f for r in group for f in r.code_filters)))
    return tuple(searches)


def data_requirements(artifacts: Artifacts | None = None) -> DataRequirements:
    """The declaration from the Library in `artifacts`, or from its own file: a population reader needs it
    without the cost of validating every PlanDefinition."""
    library = (artifacts.get("Library", LIBRARY_ID) if artifacts is not None
               else read_artifact(HERE / f"Library-{LIBRARY_ID}.json"))
    if library is None or not library.get("dataRequirement"):
        raise ArtifactError(f"{_WHERE}: missing, or declares no dataRequirement")
    requirements = tuple(_requirement(d, f"{_WHERE} dataRequirement[{i}]")
                         for i, d in enumerate(library["dataRequirement"]))
    if SUBJECT_TYPE not in {r.type for r in requirements}:
        raise ArtifactError(f"{_WHERE}: the {SUBJECT_TYPE} is not declared")
    return DataRequirements(requirements=requirements, prefetch=_searches(requirements))
