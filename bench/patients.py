"""Synthetic patients for the benchmark: a typical one, a heavy one and prefetch-size sweeps.

Every resource is dated relative to `now` (default: the current instant), because the service under test reads
the wall clock. Nothing here needs the service: the builders return plain FHIR R4 JSON dicts and `hook_request`
wraps them in a CDS Hooks patient-view request with one searchset Bundle per prefetch key, as an EHR sends it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from app.data_requirements import prefetch_types

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

TYPICAL_ID = "bench-typical"
HEAVY_ID = "bench-heavy"

# Same prefetch keys as the service's discovery document (app/service_definition.py) and tests/conftest.py.
# Resource type -> the prefetch key that holds it, from the service's data declaration (one place).
PREFETCH_KEYS: dict[str, str] = {rtype: key for key, rtype in prefetch_types().items()}


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        cc["text"] = text
    return cc


def _subject(pid: str) -> dict[str, str]:
    return {"reference": f"Patient/{pid}"}


def condition(pid: str, rid: str, codings: list[tuple[str, str, str]], onset: datetime,
              category: str = "problem-list-item", **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Condition", "id": rid,
        "clinicalStatus": {"coding": [{"system": COND_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": category}]}],
        "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]},
        "subject": _subject(pid), "onsetDateTime": _ts(onset), "recordedDate": _ts(onset),
    }
    r.update(extra)
    return r


def observation(pid: str, rid: str, code: str, display: str, when: datetime, *, category: str,
                value: dict[str, Any] | None = None, system: str = LOINC, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
        "code": _cc(system, code, display), "subject": _subject(pid), "effectiveDateTime": _ts(when),
    }
    if value:
        r.update(value)
    r.update(extra)
    return r


def _qty(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": code or unit}}


def medication_request(pid: str, rid: str, rxcui: str, ingredient: str, text: str, authored: datetime,
                       status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
        "medicationCodeableConcept": _cc(RXNORM, rxcui, ingredient, text), "subject": _subject(pid),
        "authoredOn": _ts(authored),
        "dosageInstruction": [{"text": "as directed", "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                             "periodUnit": "d"}}}],
    }


def service_request(pid: str, rid: str, code: str, display: str, authored: datetime,
                    status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "id": rid, "status": status, "intent": "order",
        "code": _cc(SNOMED, code, display), "subject": _subject(pid), "authoredOn": _ts(authored),
    }


def encounter(pid: str, rid: str, klass: str, start: datetime, hours: float = 1.0,
              service: tuple[str, str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Encounter", "id": rid, "status": "finished",
        "class": {"system": ACT_CODE, "code": klass},
        "subject": _subject(pid), "period": {"start": _ts(start), "end": _ts(start + timedelta(hours=hours))},
    }
    if service:
        r["serviceType"] = _cc(SNOMED, service[0], service[1])
    return r


def typical_patient(pid: str = TYPICAL_ID, now: datetime | None = None) -> list[dict[str, Any]]:
    """About 40 resources: breast primary with bone and liver metastases, assessments as series, 5 medications,
    two referrals, encounters, a care team and advance care planning, dated around `now`."""
    now = now or datetime.now(UTC)
    d = lambda days: now - timedelta(days=days)  # noqa: E731
    res: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-12",
        "name": [{"family": "Benchmark", "given": ["Typical"]}],
        "address": [{"city": "Springfield", "country": "US"}],
    }]
    # Conditions: primary, two metastatic sites, two unrelated problems.
    res += [
        condition(pid, f"{pid}-c1", [(SNOMED, "254837009", "Malignant neoplasm of breast"),
                                     (ICD10CM, "C50.911", "Malignant neoplasm of unspecified site of right female "
                                                          "breast")], d(900),
                  bodySite=[_cc(SNOMED, "76752008", "Breast structure")]),
        condition(pid, f"{pid}-c2", [(SNOMED, "94222008", "Secondary malignant neoplasm of bone"),
                                     (ICD10CM, "C79.51", "Secondary malignant neoplasm of bone")], d(210)),
        condition(pid, f"{pid}-c3", [(SNOMED, "94381002", "Secondary malignant neoplasm of liver")], d(75)),
        condition(pid, f"{pid}-c4", [(SNOMED, "38341003", "Hypertensive disorder"),
                                     (ICD10CM, "I10", "Essential (primary) hypertension")], d(2400)),
        condition(pid, f"{pid}-c5", [(SNOMED, "40930008", "Hypothyroidism")], d(1500)),
    ]
    # Observations: ECOG, pain, PHQ-9, distress, calcium + albumin, weight, staging.
    n = 0

    def obs(code: str, display: str, days: float, category: str, value: dict[str, Any],
            system: str = LOINC) -> None:
        nonlocal n
        n += 1
        res.append(observation(pid, f"{pid}-o{n}", code, display, d(days), category=category, value=value,
                               system=system))

    for days, ecog in ((150, 1), (80, 1), (20, 1)):
        obs("89247-1", "ECOG Performance Status score", days, "survey", {"valueInteger": ecog})
    for days, pain in ((120, 2), (60, 3), (25, 3), (6, 3)):
        obs("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", days, "survey",
            {"valueInteger": pain})
    for days, phq in ((90, 6), (14, 7)):
        obs("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]", days, "survey",
            {"valueInteger": phq})
    obs("distress-thermometer", "Distress thermometer score (0-10)", 14, "survey", {"valueInteger": 3},
        system="http://mbc-cds.example.org/fhir/CodeSystem/mbc-cds-local")
    for days, ca in ((120, 2.35), (45, 2.41), (9, 2.44)):
        obs("2000-8", "Calcium [Moles/volume] in Serum or Plasma", days, "laboratory", _qty(ca, "mmol/L"))
    obs("1751-7", "Albumin [Mass/volume] in Serum or Plasma", 9, "laboratory", _qty(38, "g/L"))
    obs("718-7", "Hemoglobin [Mass/volume] in Blood", 9, "laboratory", _qty(11.8, "g/dL"))
    for days, kg in ((170, 68.4), (110, 68.0), (60, 67.6), (10, 67.1)):
        obs("29463-7", "Body weight", days, "vital-signs", _qty(kg, "kg"))
    obs("21907-1", "Distant metastases.clinical [Class] Cancer", 210, "exam",
        {"valueCodeableConcept": _cc(SNOMED, "1229903009", "American Joint Committee on Cancer cM1")})
    # Medications: step-1 analgesia, bone-modifying agent, endocrine therapy, laxative, antihypertensive.
    res += [
        medication_request(pid, f"{pid}-m1", "161", "acetaminophen", "Acetaminophen 500 MG Oral Tablet", d(100)),
        medication_request(pid, f"{pid}-m2", "77655", "zoledronic acid", "Zoledronic acid 4 MG Injection",
                           d(200)),
        medication_request(pid, f"{pid}-m3", "72965", "letrozole", "Letrozole 2.5 MG Oral Tablet", d(200)),
        medication_request(pid, f"{pid}-m4", "36387", "senna", "Sennosides 8.6 MG Oral Tablet", d(100)),
        medication_request(pid, f"{pid}-m5", "29046", "lisinopril", "Lisinopril 10 MG Oral Tablet", d(2000)),
    ]
    # Referrals and encounters.
    res += [
        service_request(pid, f"{pid}-sr1", "308447003", "Referral to physiotherapist", d(40)),
        service_request(pid, f"{pid}-sr2", "310515004", "Referral to medical oncologist", d(220),
                        status="completed"),
        encounter(pid, f"{pid}-e1", "AMB", d(20), service=("394593009", "Medical oncology")),
        encounter(pid, f"{pid}-e2", "AMB", d(60), service=("394593009", "Medical oncology")),
        encounter(pid, f"{pid}-e3", "AMB", d(9), hours=0.5),
    ]
    # Care team (clinical nurse specialist), advance care planning, a procedure, a goal.
    res += [
        {"resourceType": "CareTeam", "id": f"{pid}-ct1", "status": "active", "subject": _subject(pid),
         "name": "Breast oncology team",
         "participant": [{"role": [_cc(SNOMED, "224570006", "Clinical nurse specialist")]},
                         {"role": [_cc(SNOMED, "309295000", "Oncologist")]}]},
        {"resourceType": "DocumentReference", "id": f"{pid}-d1", "status": "current",
         "type": _cc(LOINC, "42348-3", "Advance healthcare directives"), "subject": _subject(pid),
         "date": _ts(d(250)), "content": [{"attachment": {"contentType": "application/pdf",
                                                          "title": "Advance directive"}}]},
        {"resourceType": "Procedure", "id": f"{pid}-pr1", "status": "completed",
         "code": _cc(SNOMED, "69031006", "Excision of breast tissue"), "subject": _subject(pid),
         "performedDateTime": _ts(d(880))},
        {"resourceType": "Goal", "id": f"{pid}-g1", "lifecycleStatus": "active",
         "description": {"text": "Stay at home and keep walking the dog"}, "subject": _subject(pid),
         "startDate": d(60).date().isoformat()},
    ]
    return res


# Vital signs that the rules do not read (except SpO2, which they do), as an EHR's observation feed sends them.
_VITALS: tuple[tuple[str, str], ...] = (
    ("8867-4", "Heart rate"), ("85354-9", "Blood pressure panel with all children optional"),
    ("8310-5", "Body temperature"), ("9279-1", "Respiratory rate"),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
)


def vital_signs(pid: str, count: int, now: datetime | None = None, *, seed: int = 7,
                prefix: str = "v") -> list[dict[str, Any]]:
    """`count` vital-sign Observations spread over the last 180 days (newest first), values in normal ranges."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    step = timedelta(days=180) / max(count, 1)
    for i in range(count):
        code, display = _VITALS[i % len(_VITALS)]
        when = now - timedelta(hours=1) - step * i
        rid = f"{pid}-{prefix}{i}"
        if code == "85354-9":
            value: dict[str, Any] = {"component": [
                {"code": _cc(LOINC, "8480-6", "Systolic blood pressure"),
                 **_qty(rng.randint(105, 145), "mm[Hg]")},
                {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"),
                 **_qty(rng.randint(60, 90), "mm[Hg]")}]}
        elif code == "8867-4":
            value = _qty(rng.randint(58, 96), "/min")
        elif code == "8310-5":
            value = _qty(round(rng.uniform(36.1, 37.6), 1), "Cel")
        elif code == "9279-1":
            value = _qty(rng.randint(12, 20), "/min")
        else:
            value = _qty(rng.randint(94, 99), "%")
        r = observation(pid, rid, code, display, when, category="vital-signs", value=value)
        r["meta"] = {"lastUpdated": _ts(when), "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}
        r["performer"] = [{"reference": "Practitioner/nurse-1"}]
        out.append(r)
    return out


def heavy_patient(pid: str = HEAVY_ID, now: datetime | None = None, vitals: int = 3000) -> list[dict[str, Any]]:
    """The typical patient plus `vitals` vital-sign Observations."""
    now = now or datetime.now(UTC)
    return typical_patient(pid, now) + vital_signs(pid, vitals, now)


def _filler(pid: str, count: int, now: datetime) -> list[dict[str, Any]]:
    """A realistic mix of resources the rules mostly skip: 85 % vital signs, 10 % unrelated labs,
    3 % old ambulatory encounters, 2 % completed unrelated medication requests."""
    labs = (("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.1),
            ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9),
            ("6690-2", "Leukocytes [#/volume] in Blood", "10*3/uL", 6.2),
            ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume]", "U/L", 31.0))
    n_labs, n_enc, n_meds = count // 10, count * 3 // 100, count * 2 // 100
    n_vitals = count - n_labs - n_enc - n_meds
    out = vital_signs(pid, n_vitals, now, prefix="fv")
    for i in range(n_labs):
        code, display, unit, value = labs[i % len(labs)]
        out.append(observation(pid, f"{pid}-fl{i}", code, display, now - timedelta(days=1 + i % 700),
                               category="laboratory", value=_qty(value, unit)))
    for i in range(n_enc):
        out.append(encounter(pid, f"{pid}-fe{i}", "AMB", now - timedelta(days=100 + i % 2000)))
    for i in range(n_meds):
        out.append(medication_request(pid, f"{pid}-fm{i}", "29046", "lisinopril", "Lisinopril 10 MG Oral Tablet",
                                      now - timedelta(days=300 + i), status="completed"))
    return out


def sized_patient(size: int, now: datetime | None = None, pid: str | None = None) -> list[dict[str, Any]]:
    """Exactly `size` resources (size >= 40): the typical patient and filler."""
    now = now or datetime.now(UTC)
    pid = pid or f"bench-n{size}"
    base = typical_patient(pid, now)
    return base + _filler(pid, max(size - len(base), 0), now)


def hook_request(resources: list[dict[str, Any]], patient_id: str, *,
                 hook_instance: str = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea") -> dict[str, Any]:
    """A patient-view request with every resource in one prefetch searchset Bundle per key (no fhirServer)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        key = PREFETCH_KEYS.get(r.get("resourceType", ""))
        if key:
            by_key.setdefault(key, []).append(r)
    prefetch: dict[str, Any] = {}
    for key in PREFETCH_KEYS.values():
        items = by_key.get(key, [])
        if key == "patient":
            prefetch[key] = items[0] if items else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                             "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r,
                                        "search": {"mode": "match"}} for r in items]}
    return {"hook": "patient-view", "hookInstance": hook_instance,
            "context": {"patientId": patient_id, "userId": "Practitioner/example"}, "prefetch": prefetch}


def order_request(request: dict[str, Any], hook: str, dose: int = 1) -> dict[str, Any]:
    """The same patient and prefetch as `request`, as order-select / order-sign with one draft morphine order
    shaped as the CDS Hooks Sandbox's Rx View builds it; `dose` varies the draft (a new draft on each click)."""
    pid = request["context"]["patientId"]
    draft = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "proposal",
             "subject": {"reference": f"Patient/{pid}"}, "authoredOn": datetime.now(UTC).date().isoformat(),
             "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": {"value": dose, "system": UCUM,
                                                                      "code": "{pill}"}}]}],
             "medicationCodeableConcept": {"text": "morphine sulfate 15 MG Oral Tablet", "coding": [
                 {"display": "morphine sulfate 15 MG Oral Tablet", "system": RXNORM, "code": "892582"}]}}
    context: dict[str, Any] = {**request["context"], "draftOrders": {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}}
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/request-123"]
    return {**request, "hook": hook, "context": context}


def prefetch_count(request: dict[str, Any]) -> int:
    """Resources in a request's prefetch (the Patient counts as one)."""
    total = 0
    for value in (request.get("prefetch") or {}).values():
        if isinstance(value, dict):
            total += len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
    return total


def cases(quick: bool = False, now: datetime | None = None) -> list[dict[str, Any]]:
    """The benchmark's cases: name, patient id, request dict, resource count."""
    now = now or datetime.now(UTC)
    out = [
        {"name": "typical", "patient_id": TYPICAL_ID,
         "request": hook_request(typical_patient(TYPICAL_ID, now), TYPICAL_ID)},
        {"name": "heavy", "patient_id": HEAVY_ID,
         "request": hook_request(heavy_patient(HEAVY_ID, now, vitals=300 if quick else 3000), HEAVY_ID)},
    ]
    for size in ((100, 1000) if quick else (100, 1000, 5000, 20000)):
        pid = f"bench-n{size}"
        out.append({"name": f"n={size}", "patient_id": pid, "size": size,
                    "request": hook_request(sized_patient(size, now, pid), pid)})
    # Order hooks on the typical patient. order-select: every click changes the draft (a new dose each request),
    # so nothing is reused; order-sign: the drafts order-select last saw, so its evaluation is reused.
    typical = out[0]["request"]
    out.insert(1, {"name": "order-select", "patient_id": TYPICAL_ID, "path": "/cds-services/mbc-order-select",
                   "request": order_request(typical, "order-select"),
                   "variants": [order_request(typical, "order-select", dose) for dose in range(1, 2001)]})
    out.insert(2, {"name": "order-sign", "patient_id": TYPICAL_ID, "path": "/cds-services/mbc-order-sign",
                   "request": order_request(typical, "order-sign")})
    for c in out:
        c["resources"] = prefetch_count(c["request"])
    return out
