"""Everything the rules read about one patient, computed once per request: facts, phase, pain, calcium, weight,
and what could not be read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from app.clinical.facts import PatientFacts, TerminologyLike, build_facts
from app.clinical.gaps import ReadGap, unreadable_types
from app.clinical.measures import CalciumFinding, WeightLoss, latest_calcium, weight_loss
from app.clinical.pain import PainStatus, pain_status
from app.clinical.phase import Phase, determine_phase
from terminology.fhir_json import JsonObject

MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "Medication"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason a rule holds (or a finding a card names), with the resources it rests on."""

    text: str
    refs: tuple[str, ...] = ()


class Windows(TypedDict):
    """The configured look-back windows, passed to `evaluate_patient` as keywords."""

    acute_window: timedelta
    assessment_window: timedelta
    acp_revisit: timedelta


@dataclass(slots=True)
class Evaluation:
    facts: PatientFacts
    phase: Phase
    pain: PainStatus
    calcium: CalciumFinding | None
    weight: WeightLoss | None
    acp_revisit: timedelta
    gaps: tuple[ReadGap, ...] = ()                       # what could not be read: the fetch layer's, the fact pass's
    unreadable_types: frozenset[str] = frozenset()       # from `gaps`: the types in which an absence proves nothing
    terminology: TerminologyLike | None = None           # for checking draft medications (allergy, renal)

    @property
    def patient_id(self) -> str:
        return self.facts.patient_id

    @property
    def now(self) -> datetime:
        return self.facts.now


def evaluate_patient(resources: Iterable[JsonObject], *, patient_id: str, now: datetime,
                     terminology: TerminologyLike,
                     acute_window: timedelta, assessment_window: timedelta, acp_revisit: timedelta,
                     gaps: Iterable[ReadGap] = ()) -> Evaluation:
    """`gaps`: what the fetch layer could not read; the fact pass adds its own."""
    facts = build_facts(resources, patient_id=patient_id, now=now, terminology=terminology,
                        acute_window=acute_window, assessment_window=assessment_window)
    found = (*gaps, *facts.gaps)
    # A type the fetch layer could not read in full, or one with an entry the fact pass could not read: an absence
    # in it proves nothing.
    unreadable = unreadable_types(found)
    facts.medications_readable = not (unreadable & MEDICATION_TYPES)
    return Evaluation(facts=facts, phase=determine_phase(facts), pain=pain_status(facts),
                      calcium=latest_calcium(facts), weight=weight_loss(facts), acp_revisit=acp_revisit,
                      gaps=found, unreadable_types=unreadable, terminology=terminology)
