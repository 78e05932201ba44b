"""What the service reads, derived from the knowledge's one declaration (plandefinitions/data_requirements.py):
the prefetch templates of the three services, the resource type each prefetch key holds, and the resource types
the population readers keep.

The declaration must name exactly the types the fact pass reads, plus the Patient (read for its identity), so
that adding a resource type is one dataRequirement in the Library plus one fact handler.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from app.clinical.facts import HANDLED_TYPES
from plandefinitions.data_requirements import SUBJECT_TYPE, CodeFilter, DataRequirements, data_requirements
from plandefinitions.loader import ArtifactError
from terminology.loader import VALUESET_BASE

PATIENT_ID = "{{context.patientId}}"


class ConceptCodes(Protocol):
    """The one terminology lookup the prefetch templates need (terminology.Terminology has it)."""

    def codes(self, concept_id: str) -> frozenset[tuple[str, str]]: ...


def check_handled(declaration: DataRequirements, handled: frozenset[str]) -> None:
    """ArtifactError unless the declared types are the handled ones plus the subject."""
    declared = set(declaration.types) - {SUBJECT_TYPE}
    problems = [f"{t} is declared but no fact handler reads it" for t in sorted(declared - handled)]
    problems += [f"{t} has a fact handler but no dataRequirement" for t in sorted(handled - declared)]
    if problems:
        raise ArtifactError("Library/mbc-cds-data-requirements: " + "; ".join(problems))


@lru_cache(maxsize=1)
def declared() -> DataRequirements:
    """The declaration, checked against the fact pass (first use is at start-up: discovery and the record
    evaluator derive their templates from it)."""
    declaration = data_requirements()
    check_handled(declaration, HANDLED_TYPES)
    return declaration


def _tokens(code_filter: CodeFilter, terminology: ConceptCodes) -> list[str]:
    tokens = []
    if code_filter.value_set:
        concept = code_filter.value_set.removeprefix(VALUESET_BASE)
        try:
            pairs = terminology.codes(concept)
        except KeyError:
            raise ArtifactError(f"Library/mbc-cds-data-requirements: value set {code_filter.value_set} "
                                "is not in terminology/") from None
        tokens += [f"{system}|{code}" for system, code in sorted(pairs)]
    tokens += [f"{system}|{code}" if system else code for system, code in code_filter.codes]
    return tokens


def prefetch_templates(terminology: ConceptCodes) -> dict[str, str]:
    """The CDS Hooks prefetch templates of the three services."""
    return templates_of(declared(), terminology)


def templates_of(declaration: DataRequirements, terminology: ConceptCodes) -> dict[str, str]:
    """One prefetch template per declared prefetch key, value sets expanded with `terminology` (so site-local
    codes join the server-side filter)."""
    templates: dict[str, str] = {}
    for search in declaration.prefetch:
        if search.patient_param is None:
            templates[search.key] = f"{search.type}/{PATIENT_ID}"
            continue
        by_param: dict[str, list[str]] = {}
        for code_filter in search.code_filters:
            tokens = by_param.setdefault(code_filter.search_param, [])
            for token in _tokens(code_filter, terminology):
                if token not in tokens:
                    tokens.append(token)
        query = [f"{search.patient_param}={PATIENT_ID}"]
        query += [f"{param}={','.join(tokens)}" for param, tokens in by_param.items() if tokens]
        templates[search.key] = f"{search.type}?{'&'.join(query)}"
    return templates


def prefetch_types() -> dict[str, str]:
    """Prefetch key -> the resource type it holds (what a read gap on that key is about)."""
    return {search.key: search.type for search in declared().prefetch}


def record_types() -> frozenset[str]:
    """Every resource type the rules read; population readers skip the others."""
    return frozenset(declared().types)
