"""The population worklist's tiers, declared once as a CodeSystem (CodeSystem-mbc-cds-worklist-tiers.json).

A PlanDefinition action names its tier with the worklist-tier extension (a code of this system); the CodeSystem
gives each tier its rank, its display and, when the tier holds only in one phase, that phase. The worklist ranks
by these values and names no tier in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from plandefinitions.loader import HERE, WORKLIST_TIER_SYSTEM, ArtifactError, Artifacts, read_artifact

CODE_SYSTEM_ID = "mbc-cds-worklist-tiers"
_WHERE = f"CodeSystem/{CODE_SYSTEM_ID}"


@dataclass(frozen=True, slots=True)
class WorklistTier:
    code: str
    display: str
    definition: str   # the phrase the worklist's FHIR List note ranks by
    rank: int         # 1 first
    phase: str | None  # None: any phase

    def holds_in(self, phase: str) -> bool:
        return self.phase is None or self.phase == phase


@dataclass(frozen=True, slots=True)
class WorklistTiers:
    tiers: tuple[WorklistTier, ...]   # in rank order

    @property
    def last(self) -> WorklistTier:
        """The tier of a patient none of whose fired rules gives one."""
        return self.tiers[-1]

    def get(self, code: str) -> WorklistTier | None:
        return next((t for t in self.tiers if t.code == code), None)

    def of(self, named: list[WorklistTier | None], phase: str) -> WorklistTier:
        """The first-ranked of the `named` tiers that holds in `phase`, else the last tier."""
        holding = [t for t in named if t is not None and t.holds_in(phase)]
        return min(holding, key=lambda t: t.rank) if holding else self.last


def _property(concept: dict[str, Any], code: str, key: str) -> Any:
    values = [p.get(key) for p in concept.get("property") or [] if p.get("code") == code]
    if len(values) > 1:
        raise ArtifactError(f"{_WHERE} concept {concept.get('code')}: property {code} given twice")
    return values[0] if values else None


def _tier(concept: dict[str, Any]) -> WorklistTier:
    code = str(concept.get("code") or "")
    rank = _property(concept, "rank", "valueInteger")
    if not isinstance(rank, int) or rank < 1:
        raise ArtifactError(f"{_WHERE} concept {code}: needs a rank property (valueInteger, 1 or more)")
    phase = _property(concept, "phase", "valueCode")
    return WorklistTier(code=code, display=str(concept.get("display") or code),
                        definition=str(concept.get("definition") or ""), rank=rank,
                        phase=str(phase) if phase is not None else None)


def worklist_tiers(artifacts: Artifacts | None = None) -> WorklistTiers:
    """The tiers from the CodeSystem in `artifacts`, or from its own file (read once): the worklist needs them
    without the cost of validating every PlanDefinition."""
    if artifacts is None:
        return _shipped()
    return _parse(artifacts.get("CodeSystem", CODE_SYSTEM_ID))


@lru_cache(maxsize=1)
def _shipped() -> WorklistTiers:
    return _parse(read_artifact(HERE / f"CodeSystem-{CODE_SYSTEM_ID}.json"))


def _parse(system: dict[str, Any] | None) -> WorklistTiers:
    if system is None or system.get("url") != WORKLIST_TIER_SYSTEM or not system.get("concept"):
        raise ArtifactError(f"{_WHERE}: missing, not {WORKLIST_TIER_SYSTEM}, or without concepts")
    tiers = sorted((_tier(c) for c in system["concept"]), key=lambda t: t.rank)
    if len({t.rank for t in tiers}) != len(tiers) or len({t.code for t in tiers}) != len(tiers):
        raise ArtifactError(f"{_WHERE}: two tiers share a code or a rank: the worklist order must be total")
    if tiers[-1].phase is not None:
        raise ArtifactError(f"{_WHERE}: the last tier takes every other patient: it cannot name a phase")
    return WorklistTiers(tuple(tiers))
