"""The clinical predicates that PlanDefinition conditions name, and the priorities their dynamicValues name.

`PREDICATES` and `PRIORITIES` are the clinical part of the vocabulary the PlanDefinitions are written in
(documented in plandefinitions/Library-mbc-cds-predicates.json). The service hands them, with the order-time
names of app.orders.predicates, to the engine when it compiles the knowledge (app.service.knowledge); the engine
itself names none of them. A new rule's predicate is a function in one of the modules of this package and a line
here: nothing in app/engine changes.
"""

from __future__ import annotations

from collections.abc import Callable

from app.clinical.evaluation import Evaluation
from app.clinical.gaps import nothing_readable
from app.clinical.predicates.acp import acp_code_status_and_place_of_death, acp_on_record, acp_stale
from app.clinical.predicates.base import (
    NO_ACP,
    NO_ALLERGY,
    NO_CODE_STATUS_OR_PLACE_OF_DEATH,
    NO_COMPLICATION,
    NO_CONDITION,
    NO_OBSERVATION,
    NO_SERVICE,
    NO_TREATMENT,
    NOT_ON_DRUG_CLASS,
    Named,
)
from app.clinical.predicates.emergencies import (
    bowel_obstruction,
    cord_compression_risk,
    hypercalcaemia,
    hypercalcaemia_severe,
    severe_hypercalcaemia,
)
from app.clinical.predicates.ladder import (
    NEXT_STEP_ARGS,
    next_step,
    no_laxative_recognised,
    pain_step_up,
    pain_uncontrolled_on_strong_opioid,
)
from app.clinical.predicates.phase import (
    ASSESSMENT_KINDS,
    acute_phase,
    always,
    assessment_missing,
    assessments_missing,
    data_incomplete,
    stable_or_unknown_phase,
    stable_phase,
    unknown_phase,
)
from app.clinical.predicates.record import (
    COMPLICATION_ARGS,
    DRUG_ARGS,
    SERVICE_ARGS,
    SITE_ARGS,
    TREATMENT_ARGS,
    allergy_to_class,
    has_complication,
    has_service,
    has_site,
    has_treatment,
    medications_complete,
    on_drug_class,
    renal_impairment_severe,
)
from app.clinical.predicates.referrals import (
    distress_elevated,
    end_of_life,
    hospice_indicated,
    rehabilitation_indicated,
    social_work_indicated,
    spiritual_concern,
    weight_loss_5,
)
from app.clinical.predicates.symptoms import (
    bone_pain,
    bone_pain_located,
    bone_pain_location,
    brain_symptomatic,
    breathlessness,
    fatigue,
    good_performance,
    liver_symptoms,
    long_bone_fracture_risk,
    poor_performance,
    skin_disease,
    spo2_low,
)


# -- priorities (PlanDefinition dynamicValue) -------------------------------------------------------------
def phase_priority(ev: Evaluation) -> str:
    return "urgent" if ev.phase.name == "acute" else "routine"


def hypercalcaemia_priority(ev: Evaluation) -> str:
    return "stat" if hypercalcaemia_severe(ev) else "urgent"


def bone_pain_priority(ev: Evaluation) -> str:
    return "urgent" if bone_pain_location(ev) is not None else "routine"


def brain_priority(ev: Evaluation) -> str:
    return "routine" if has_treatment(ev, "brain-local") else "urgent"


def liver_priority(ev: Evaluation) -> str:
    return "urgent" if ev.facts.has_complication("jaundice") else "routine"


def read_gap_priority(ev: Evaluation) -> str:
    # Nothing checked at all (no Patient or no Conditions) must not look like a quiet record: a warning.
    return "urgent" if nothing_readable(ev.gaps) else "routine"


# -- the names PlanDefinition conditions and dynamicValues use ---------------------------------------------
# Documented in plandefinitions/Library-mbc-cds-predicates.json: a new name gets its line there too.
PREDICATES: dict[str, Named] = {
    "Always": Named(always),
    "IsAcutePhase": Named(acute_phase),
    "IsStablePhase": Named(stable_phase),
    "IsUnknownPhase": Named(unknown_phase),
    "IsStableOrUnknownPhase": Named(stable_or_unknown_phase),
    "AssessmentsMissing": Named(assessments_missing),
    "AssessmentMissing": Named(assessment_missing, frozenset(ASSESSMENT_KINDS)),
    "DataIncomplete": Named(data_incomplete),
    "CordCompressionRisk": Named(cord_compression_risk, negation=NO_CONDITION),
    "Hypercalcaemia": Named(hypercalcaemia),
    "HypercalcaemiaSevere": Named(severe_hypercalcaemia),
    "BowelObstruction": Named(bowel_obstruction, negation=NO_CONDITION),
    "HasSite": Named(has_site, SITE_ARGS),
    "HasComplication": Named(has_complication, COMPLICATION_ARGS, NO_COMPLICATION),
    "OnDrugClass": Named(on_drug_class, DRUG_ARGS, NOT_ON_DRUG_CLASS),
    "HasService": Named(has_service, SERVICE_ARGS, NO_SERVICE),
    "HasTreatment": Named(has_treatment, TREATMENT_ARGS, NO_TREATMENT),
    "AllergyToClass": Named(allergy_to_class, DRUG_ARGS, NO_ALLERGY),
    "RenalImpairmentSevere": Named(renal_impairment_severe, negation=NO_OBSERVATION),
    "MedicationsComplete": Named(medications_complete),
    "BonePain": Named(bone_pain),
    "BonePainLocated": Named(bone_pain_located),
    "LongBoneFractureRisk": Named(long_bone_fracture_risk),
    "BrainSymptomatic": Named(brain_symptomatic),
    "PoorPerformance": Named(poor_performance, negation=NO_OBSERVATION),
    "GoodPerformance": Named(good_performance),
    "LiverSymptoms": Named(liver_symptoms),
    "SpO2Low": Named(spo2_low),
    "Breathlessness": Named(breathlessness),
    "SkinDisease": Named(skin_disease),
    "Fatigue": Named(fatigue),
    "PainStepUp": Named(pain_step_up),
    "NoLaxativeRecognised": Named(no_laxative_recognised),
    "NextStep": Named(next_step, NEXT_STEP_ARGS),
    "PainUncontrolledOnStrongOpioid": Named(pain_uncontrolled_on_strong_opioid),
    "RehabilitationIndicated": Named(rehabilitation_indicated),
    "EndOfLife": Named(end_of_life, negation=NO_OBSERVATION),
    "SocialWorkIndicated": Named(social_work_indicated),
    "HospiceIndicated": Named(hospice_indicated),
    "WeightLoss5": Named(weight_loss_5),
    "DistressElevated": Named(distress_elevated),
    "SpiritualConcern": Named(spiritual_concern),
    "AcpOnRecord": Named(acp_on_record, negation=NO_ACP),
    "AcpCodeStatusAndPlaceOfDeath": Named(acp_code_status_and_place_of_death,
                                         negation=NO_CODE_STATUS_OR_PLACE_OF_DEATH),
    "AcpStale": Named(acp_stale),
}

PRIORITIES: dict[str, Callable[[Evaluation], str]] = {
    "PhasePriority": phase_priority,
    "HypercalcaemiaPriority": hypercalcaemia_priority,
    "BonePainPriority": bone_pain_priority,
    "BrainPriority": brain_priority,
    "LiverPriority": liver_priority,
    "ReadGapPriority": read_gap_priority,
}
