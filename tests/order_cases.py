"""Patients and draft orders for the order-select / order-sign tests, shaped as EHRs and the CDS Hooks Sandbox
send them (Sandbox Rx View / Rx Sign: one MedicationRequest draft `request-123`, RxNorm product codes)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from tests.conftest import NOW, hook_request

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CODEX = "http://hl7.org/fhir/us/codex-radiation-therapy/StructureDefinition/"
PID = "order-pt"


def ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(cid: str, code: str, display: str, days_ago: float = 60, system: str = ICD) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PID}"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "onsetDateTime": ts(days_ago), "recordedDate": ts(days_ago)}


def observation(oid: str, code: str, value: float, unit: str, days_ago: float = 3) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": ts(days_ago),
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def active_med(mid: str, text: str, code: str | None = None) -> dict[str, Any]:
    coding = [{"system": RXNORM, "code": code, "display": text}] if code else []
    return {"resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{PID}"}, "authoredOn": ts(20),
            "medicationCodeableConcept": {"coding": coding, "text": text}}


def allergy(aid: str, text: str, reaction: str = "Rash", code: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"text": text}
    if code:
        cc["coding"] = [{"system": RXNORM, "code": code, "display": text}]
    return {"resourceType": "AllergyIntolerance", "id": aid, "patient": {"reference": f"Patient/{PID}"},
            "clinicalStatus": {"coding": [{"system":
                                           "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{"system":
                                               "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                               "code": "confirmed"}]},
            "criticality": "high", "code": cc, "recordedDate": ts(400),
            "reaction": [{"manifestation": [{"text": reaction}]}]}


def patient(*extra: dict[str, Any], bone: bool = True) -> list[dict[str, Any]]:
    """A woman with metastatic breast cancer (bone metastasis unless bone=False: liver instead)."""
    resources = [
        {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"},
        condition("primary", "C50.911", "Malignant neoplasm of unspecified site of right female breast", 700),
        condition("bone-met", "C79.51", "Secondary malignant neoplasm of bone", 90) if bone
        else condition("liver-met", "C78.7", "Secondary malignant neoplasm of liver", 90),
    ]
    return resources + list(extra)


# -- draft orders ---------------------------------------------------------------------------------------
def med_draft(rid: str, text: str, code: str | None = None, *, intent: str | None = "proposal") -> dict[str, Any]:
    """A draft MedicationRequest as the Sandbox's Rx View builds it (RxNorm product code, name in text)."""
    d: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": "draft",
                         "subject": {"reference": f"Patient/{PID}"}, "authoredOn": NOW.date().isoformat(),
                         "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                                "doseAndRate": [{"doseQuantity": {
                                                    "value": 1, "system": "http://unitsofmeasure.org",
                                                    "code": "{pill}"}}]}]}
    if intent:
        d["intent"] = intent
    d["medicationCodeableConcept"] = {"text": text, "coding": [
        {"display": text, "system": RXNORM, "code": code}]} if code else {"text": text}
    return d


MORPHINE = ("morphine sulfate 15 MG Oral Tablet", "892582")
OXYCODONE = ("12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet", "1049621")


def sandbox_empty_draft() -> dict[str, Any]:
    """What Rx View sends as the tab opens: no medication and no intent yet."""
    return {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
            "subject": {"reference": f"Patient/{PID}"}, "authoredOn": NOW.date().isoformat()}


def rt_draft(rid: str = "rt-1", *, per_cgy: float | None = 400, fractions: int | None = 5, text: str | None = None,
             reason_ref: str | None = "Condition/bone-met", body_site: str | None = None) -> dict[str, Any]:
    """A draft CodeX Radiotherapy Course Prescription (dose per volume in cGy) for palliative radiotherapy."""
    d: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order",
        "meta": {"profile": [CODEX + "codexrt-radiotherapy-course-prescription"]},
        "code": {"text": text or "Palliative external beam radiotherapy"},
        "subject": {"reference": f"Patient/{PID}"}, "authoredOn": NOW.date().isoformat(),
        "requester": {"reference": "Practitioner/onc-1"},
        "note": [{"text": "Planning CT booked"}],
    }
    if per_cgy is not None and fractions is not None:
        d["extension"] = [{"url": CODEX + "codexrt-radiotherapy-dose-prescribed-to-volume", "extension": [
            {"url": "volume", "valueReference": {"reference": "BodyStructure/vol-l3"}},
            {"url": "totalDose", "valueQuantity": {"value": per_cgy * fractions, "unit": "cGy",
                                                   "system": "http://unitsofmeasure.org", "code": "cGy"}},
            {"url": "fractions", "valuePositiveInt": fractions}]}]
    if reason_ref:
        d["reasonReference"] = [{"reference": reason_ref}]
    if body_site:
        d["bodySite"] = [{"text": body_site}]
    return d


def bundle(*drafts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}


def order_request(hook: str, resources: list[dict[str, Any]], drafts: list[dict[str, Any]],
                  selections: list[str] | None = None, instance: str = "5d2a3f1e-0c8b-4b8e-9c7a-1f2e3d4c5b6a",
                  **context: Any) -> dict[str, Any]:
    body = hook_request(resources, PID)
    body["hook"] = hook
    body["hookInstance"] = instance
    body["context"] = {"patientId": PID, "userId": "Practitioner/example", "encounterId": "enc-1",
                       "draftOrders": bundle(*drafts), **context}
    if hook == "order-select":
        body["context"]["selections"] = selections if selections is not None else [
            f"{d['resourceType']}/{d['id']}" for d in drafts[-1:]]
    return body


def apply_suggestion(drafts: list[dict[str, Any]], suggestion: dict[str, Any]) -> list[dict[str, Any]]:
    """What an EHR does when the clinician accepts a suggestion: change its draft orders."""
    out = copy.deepcopy(drafts)
    for action in suggestion["actions"]:
        if action["type"] == "create":
            out.append(copy.deepcopy(action["resource"]) | {"id": f"accepted-{len(out)}"})
        elif action["type"] == "update":
            res = action["resource"]
            out = [copy.deepcopy(res) if d["id"] == res["id"] else d for d in out]
        elif action["type"] == "delete":
            out = [d for d in out if f"{d['resourceType']}/{d['id']}" != action["resourceId"]]
    return out
