"""The CDS services this app offers: ids, hooks and prefetch templates (built from the value sets they read)."""

from __future__ import annotations

from typing import Protocol

from cds_hooks.discovery import ServiceDefinition


class ConceptCodes(Protocol):
    """The one terminology lookup the prefetch templates need (terminology.Terminology has it)."""

    def codes(self, concept_id: str) -> frozenset[tuple[str, str]]: ...


SERVICE_ID = "mbc-palliative-care"
HOOK = "patient-view"
ORDER_SELECT_ID = "mbc-order-select"
ORDER_SIGN_ID = "mbc-order-sign"
_P = "{{context.patientId}}"

# Observation codes the rules read, as a server-side filter so that vital-sign floods stay on the server.
_OBSERVATION_CONCEPTS = (
    "obs-ecog", "obs-karnofsky", "obs-pain-score", "obs-distress", "obs-phq9", "obs-phq2", "obs-gad7",
    "obs-calcium", "obs-corrected-calcium", "obs-albumin", "obs-spo2", "obs-body-weight", "obs-disease-status",
    "obs-tnm-m", "obs-stage-group", "acp-code-status", "acp-place-of-death", "acp-goals-of-care",
    "obs-egfr", "obs-creatinine-clearance", "obs-fatigue-score",
)


def observation_code_filter(terminology: ConceptCodes) -> str:
    codes: list[str] = []
    for concept in _OBSERVATION_CONCEPTS:
        try:
            pairs = terminology.codes(concept)
        except KeyError:
            continue
        for system, code in sorted(pairs):
            token = f"{system}|{code}"
            if token not in codes:
                codes.append(token)
    return ",".join(codes)


def prefetch_templates(terminology: ConceptCodes) -> dict[str, str]:
    obs_codes = observation_code_filter(terminology)
    observations = f"Observation?patient={_P}" + (f"&code={obs_codes}" if obs_codes else "")
    return {
        "patient": f"Patient/{_P}",
        "conditions": f"Condition?patient={_P}",
        "observations": observations,
        "medicationRequests": f"MedicationRequest?patient={_P}&status=active",
        "medicationStatements": f"MedicationStatement?patient={_P}&status=active",
        "serviceRequests": f"ServiceRequest?patient={_P}",
        "encounters": f"Encounter?patient={_P}",
        "careTeams": f"CareTeam?patient={_P}",
        "documentReferences": f"DocumentReference?patient={_P}",
        "consents": f"Consent?patient={_P}",
        "goals": f"Goal?patient={_P}",
        "procedures": f"Procedure?patient={_P}",
        "allergies": f"AllergyIntolerance?patient={_P}",
    }


def service_definition(terminology: ConceptCodes) -> ServiceDefinition:
    return ServiceDefinition(
        id=SERVICE_ID,
        hook=HOOK,
        title="Metastatic breast cancer: palliative and supportive care",
        description=(
            "For patients with metastatic (stage IV) breast cancer: phase of disease (acute / stable), metastatic "
            "sites, oncologic emergencies, the next WHO pain-ladder step, referrals (palliative care, hospice, "
            "rehabilitation, social work, psycho-oncology, nutrition) and advance care planning prompts. "
            "Suggestions are draft resources for a clinician to sign."
        ),
        prefetch=prefetch_templates(terminology),
        usage_requirements="Read access to the patient's Conditions, Observations, medications, "
                           "AllergyIntolerances, Procedures, ServiceRequests, Encounters, CareTeams and "
                           "advance-care-planning documents.",
    )


_ORDER_RULES = (
    "a draft opioid without a laxative (suggests a senna draft), a drug the patient is allergic to (suggests "
    "removing the draft), multi-fraction radiotherapy for painful bone metastases (suggests 8 Gy in one "
    "fraction), a prophylactic anticonvulsant with brain metastases, a stimulant laxative in bowel obstruction "
    "(suggests removing it), morphine with severe renal impairment, and checks before a bone-modifying agent"
)


def order_service_definitions(terminology: ConceptCodes) -> list[ServiceDefinition]:
    """order-select and order-sign: the same record (same prefetch templates) plus context.draftOrders."""
    prefetch = prefetch_templates(terminology)
    usage = ("Read access as for mbc-palliative-care; context.draftOrders holds the draft MedicationRequest and "
             "ServiceRequest resources (radiotherapy dose and fractions as HL7 CodeX Radiation Therapy extensions "
             "where available).")
    return [
        ServiceDefinition(
            id=ORDER_SELECT_ID, hook="order-select",
            title="Metastatic breast cancer: checks on the selected draft orders",
            description=("For patients with metastatic breast cancer, judges the newly selected draft orders "
                         f"(context.selections): {_ORDER_RULES}. Suggestions change the draft orders."),
            prefetch=dict(prefetch), usage_requirements=usage),
        ServiceDefinition(
            id=ORDER_SIGN_ID, hook="order-sign",
            title="Metastatic breast cancer: checks on the draft orders before signing",
            description=(f"For patients with metastatic breast cancer, judges every draft order before signing: "
                         f"{_ORDER_RULES}. Suggestions change the draft orders."),
            prefetch=dict(prefetch), usage_requirements=usage),
    ]
