"""Everything the rules read about one patient, computed once per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from app.clinical.facts import PatientFacts, TerminologyLike, build_facts
from app.clinical.measures import CalciumFinding, WeightLoss, latest_calcium, weight_loss
from app.clinical.pain import PainStatus, pain_status
from app.clinical.phase import Phase, determine_phase
from app.orders.drafts import OrderContext
from app.read_gaps import ReadGap


@dataclass(frozen=True, slots=True)
class Evidence:
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
    problems: list[str] = field(default_factory=list)   # what could not be read (no patient data)
    unreadable_types: frozenset[str] = frozenset()       # resource types with a read problem
    gaps: tuple[ReadGap, ...] = ()                       # the same, typed (resource type, kind, cause)
    acp_revisit: timedelta = timedelta(days=182)
    orders: OrderContext | None = None                  # the drafts of an order-select / order-sign call
    terminology: TerminologyLike | None = None           # for checking draft medications (allergy, renal)

    @property
    def patient_id(self) -> str:
        return self.facts.patient_id

    @property
    def now(self) -> datetime:
        return self.facts.now


def evaluate_patient(resources: list[Any], *, patient_id: str, now: datetime,
                     terminology: TerminologyLike,
                     acute_window: timedelta, assessment_window: timedelta, acp_revisit: timedelta,
                     problems: list[str] | None = None,
                     unreadable_types: frozenset[str] = frozenset(),
                     gaps: tuple[ReadGap, ...] = ()) -> Evaluation:
    facts = build_facts(resources, patient_id=patient_id, now=now, terminology=terminology,
                        acute_window=acute_window, assessment_window=assessment_window)
    # The facts know only what they were given; the fetch layer knows which medication reads failed.
    facts.medications_readable = not (unreadable_types & {"MedicationRequest", "MedicationStatement", "Medication"})
    all_problems = list(problems or [])
    if facts.unreadable:
        counts: dict[str, int] = {}
        for note in facts.unreadable:
            counts[note] = counts.get(note, 0) + 1
        all_problems.extend(f"{n} x {note}" if n > 1 else note for note, n in counts.items())
    return Evaluation(facts=facts, phase=determine_phase(facts), pain=pain_status(facts),
                      calcium=latest_calcium(facts), weight=weight_loss(facts), problems=all_problems,
                      acp_revisit=acp_revisit, unreadable_types=unreadable_types, gaps=gaps,
                      terminology=terminology)
