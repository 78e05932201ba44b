"""Turn an ActivityDefinition into a draft FHIR R4 resource for one patient (status draft, intent proposal)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_hooks.cards import FhirResource

SUPPORTED_KINDS = ("ServiceRequest", "MedicationRequest", "Task")
# Drafts of one ActivityDefinition differ only in free-string values (patient and condition references, the
# authoring instant in a fixed format), which cannot change whether the resource is valid FHIR R4. So each
# shape is validated with fhir.resources the first time it is emitted and remembered; tests validate every
# emitted draft again in full.
_VALIDATED: set[tuple[str, str, int, int]] = set()


class SuggestionError(ValueError):
    pass


def build_draft(activity: dict[str, Any], *, patient_id: str, reasons: list[str], now: datetime,
                note: str, task_description: str = "") -> FhirResource:
    """The draft; a Task's description is `task_description` (the activity's, rendered by the caller)."""
    kind = activity.get("kind")
    if kind not in SUPPORTED_KINDS:
        raise SuggestionError(f"ActivityDefinition/{activity.get('id')}: unsupported kind {kind!r}")
    subject = {"reference": f"Patient/{patient_id}"}
    reason_refs = [{"reference": r} for r in reasons]
    resource: FhirResource = {"resourceType": kind, "status": "draft", "intent": "proposal"}
    if activity.get("priority"):
        resource["priority"] = activity["priority"]
    authored = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    canonical = activity.get("url")
    common: dict[str, Any] = {"subject": subject, "authoredOn": authored}
    if reason_refs:
        common["reasonReference"] = reason_refs
    if canonical:
        common["instantiatesCanonical"] = [canonical]
    common["note"] = [{"text": note}]
    if kind == "MedicationRequest":
        product = activity.get("productCodeableConcept")
        if not product:
            raise SuggestionError(f"ActivityDefinition/{activity.get('id')}: no product")
        resource["medicationCodeableConcept"] = product
        resource.update(common)
    elif kind == "ServiceRequest":
        if activity.get("code"):
            resource["code"] = activity["code"]
        resource.update(common)
    else:  # Task: `for` instead of subject; instantiatesCanonical and reasonReference are 0..1 in R4
        if canonical:
            resource["instantiatesCanonical"] = canonical
        if activity.get("code"):
            resource["code"] = activity["code"]
        resource["description"] = task_description[:1000]
        resource["for"] = subject
        resource["authoredOn"] = authored
        if reason_refs:
            resource["reasonReference"] = reason_refs[0]
        resource["note"] = common["note"]
    shape = (str(activity.get("url") or activity.get("id")), kind, len(reason_refs), len(note))
    if shape not in _VALIDATED:
        get_fhir_model_class(kind).model_validate(resource)
        _VALIDATED.add(shape)
    return resource
