"""The CDS services this app offers: ids, hooks, descriptions; the prefetch templates come from the data
declaration (app/data_requirements.py)."""

from __future__ import annotations

from app.data_requirements import ConceptCodes, prefetch_templates
from cds_hooks.discovery import ServiceDefinition

SERVICE_ID = "mbc-palliative-care"
HOOK = "patient-view"
ORDER_SELECT_ID = "mbc-order-select"
ORDER_SIGN_ID = "mbc-order-sign"


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
