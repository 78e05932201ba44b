"""The condition language of the PlanDefinitions (text/x-mbc-cds-predicate): '[not ]Name[(arg)]'.

A table from each name to its clinical function (app.clinical.predicates), the arguments it accepts and what its
negation rests on; names and arguments are checked when the knowledge is loaded. Nothing clinical is decided here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from app.clinical import predicates as P
from app.clinical.evaluation import Evaluation
from app.clinical.predicates import Findings, Negation

Predicate = Callable[[Evaluation, str | None], Findings]
DynamicValue = Callable[[Evaluation], str]

LANGUAGE = "text/x-mbc-cds-predicate"
_EXPR = re.compile(r"^(not )?([A-Z][A-Za-z0-9]*)(?:\(([a-z0-9-]+)\))?$")


class KnowledgeError(ValueError):
    """The knowledge artifacts refer to something the engine does not define."""


@dataclass(frozen=True, slots=True)
class Spec:
    fn: Predicate
    args: frozenset[str] | None = None   # None: takes no argument
    negation: Negation | None = None     # None: "not X" needs no reading guard and names no absence


REGISTRY: dict[str, Spec] = {
    "Always": Spec(P.always),
    "IsAcutePhase": Spec(P.acute_phase),
    "IsStablePhase": Spec(P.stable_phase),
    "IsUnknownPhase": Spec(P.unknown_phase),
    "IsStableOrUnknownPhase": Spec(P.stable_or_unknown_phase),
    "AssessmentsMissing": Spec(P.assessments_missing),
    "AssessmentMissing": Spec(P.assessment_missing, frozenset(P.ASSESSMENT_KINDS)),
    "DataIncomplete": Spec(P.data_incomplete),
    "CordCompressionRisk": Spec(P.cord_compression_risk, negation=P.NO_CONDITION),
    "Hypercalcaemia": Spec(P.hypercalcaemia),
    "HypercalcaemiaSevere": Spec(P.severe_hypercalcaemia),
    "BowelObstruction": Spec(P.bowel_obstruction, negation=P.NO_CONDITION),
    "HasSite": Spec(P.has_site, P.SITE_ARGS),
    "HasComplication": Spec(P.has_complication, P.COMPLICATION_ARGS, P.NO_COMPLICATION),
    "OnDrugClass": Spec(P.on_drug_class, P.DRUG_ARGS, P.NOT_ON_DRUG_CLASS),
    "HasService": Spec(P.has_service, P.SERVICE_ARGS, P.NO_SERVICE),
    "HasTreatment": Spec(P.has_treatment, P.TREATMENT_ARGS, P.NO_TREATMENT),
    "AllergyToClass": Spec(P.allergy_to_class, P.DRUG_ARGS, P.NO_ALLERGY),
    "RenalImpairmentSevere": Spec(P.renal_impairment_severe, negation=P.NO_OBSERVATION),
    "MedicationsComplete": Spec(P.medications_complete),
    "BonePain": Spec(P.bone_pain),
    "BonePainLocated": Spec(P.bone_pain_located),
    "LongBoneFractureRisk": Spec(P.long_bone_fracture_risk),
    "BrainSymptomatic": Spec(P.brain_symptomatic),
    "PoorPerformance": Spec(P.poor_performance, negation=P.NO_OBSERVATION),
    "GoodPerformance": Spec(P.good_performance),
    "LiverSymptoms": Spec(P.liver_symptoms),
    "SpO2Low": Spec(P.spo2_low),
    "Breathlessness": Spec(P.breathlessness),
    "SkinDisease": Spec(P.skin_disease),
    "Fatigue": Spec(P.fatigue),
    "PainStepUp": Spec(P.pain_step_up),
    "NoLaxativeRecognised": Spec(P.no_laxative_recognised),
    "NextStep": Spec(P.next_step, P.NEXT_STEP_ARGS),
    "PainUncontrolledOnStrongOpioid": Spec(P.pain_uncontrolled_on_strong_opioid),
    "RehabilitationIndicated": Spec(P.rehabilitation_indicated),
    "EndOfLife": Spec(P.end_of_life, negation=P.NO_OBSERVATION),
    "SocialWorkIndicated": Spec(P.social_work_indicated),
    "HospiceIndicated": Spec(P.hospice_indicated),
    "WeightLoss5": Spec(P.weight_loss_5),
    "DistressElevated": Spec(P.distress_elevated),
    "SpiritualConcern": Spec(P.spiritual_concern),
    "AcpOnRecord": Spec(P.acp_on_record, negation=P.NO_ACP),
    "AcpCodeStatusAndPlaceOfDeath": Spec(P.acp_code_status_and_place_of_death,
                                         negation=P.NO_CODE_STATUS_OR_PLACE_OF_DEATH),
    "AcpStale": Spec(P.acp_stale),
}

DYNAMIC_VALUES: dict[str, DynamicValue] = {
    "PhasePriority": P.phase_priority,
    "HypercalcaemiaPriority": P.hypercalcaemia_priority,
    "BonePainPriority": P.bone_pain_priority,
    "BrainPriority": P.brain_priority,
    "LiverPriority": P.liver_priority,
    "ReadGapPriority": P.read_gap_priority,
}


def predicate(name: str, args: frozenset[str] | None = None,
              negation: Negation | None = None) -> Callable[[Predicate], Predicate]:
    """Add a predicate defined outside app.clinical (the order-time ones of app.orders) to the table."""
    def register(fn: Predicate) -> Predicate:
        REGISTRY[name] = Spec(fn, args, negation)
        return fn
    return register


@dataclass(frozen=True, slots=True)
class Condition:
    negate: bool
    name: str
    arg: str | None
    source: str

    def __call__(self, ev: Evaluation) -> Findings:
        spec = REGISTRY[self.name]
        if not self.negate:
            return spec.fn(ev, self.arg)
        if spec.negation is not None and spec.negation.withheld(ev):
            # "Not on drug X", "no palliative care on record"...: not claimed from a record read in part.
            return None
        if spec.fn(ev, self.arg) is not None:
            return None
        return spec.negation.evidence(self.arg) if spec.negation is not None else []


def compile_condition(expression: str) -> Condition:
    m = _EXPR.match(expression.strip())
    if not m:
        raise KnowledgeError(f"condition {expression!r} does not follow the grammar '[not ]Name[(arg)]'")
    negate, name, arg = bool(m.group(1)), m.group(2), m.group(3)
    spec = REGISTRY.get(name)
    if spec is None:
        raise KnowledgeError(f"condition {expression!r} names an unknown predicate {name!r}")
    if spec.args is None and arg is not None:
        raise KnowledgeError(f"predicate {name} takes no argument ({expression!r})")
    if spec.args is not None and arg not in spec.args:
        raise KnowledgeError(f"predicate {name} needs one of {sorted(spec.args)} ({expression!r})")
    return Condition(negate, name, arg, expression)


def compile_dynamic_value(expression: str) -> DynamicValue:
    fn = DYNAMIC_VALUES.get(expression.strip())
    if fn is None:
        raise KnowledgeError(f"unknown dynamic value {expression!r}")
    return fn
