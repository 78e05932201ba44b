"""Facts, phase and pain ladder at their boundaries (real terminology, injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.clinical.facts import build_facts
from app.clinical.measures import latest_calcium, weight_loss
from app.clinical.pain import pain_status, severity_of
from app.clinical.phase import determine_phase
from terminology import get_terminology

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PID = "p1"
# The deployment defaults (Settings.acute_window_days / assessment_window_days).
WINDOWS = {"acute_window": timedelta(days=30), "assessment_window": timedelta(days=90)}
SCT, ICD, LOINC, RX = ("http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org",
                       "http://www.nlm.nih.gov/research/umls/rxnorm")


def day(n: int) -> str:
    return (NOW - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(cid: str, system: str, code: str, onset_days: int = 400, status: str = "active",
         verification: str | None = "confirmed", body_site: tuple[str, str] | None = None) -> dict:
    r: dict = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PID}"},
               "clinicalStatus": {"coding": [{"code": status}]}, "code": {"coding": [{"system": system, "code": code}]},
               "onsetDateTime": day(onset_days)}
    if verification:
        r["verificationStatus"] = {"coding": [{"code": verification}]}
    if body_site:
        r["bodySite"] = [{"coding": [{"system": body_site[0], "code": body_site[1]}]}]
    return r


def obs(oid: str, code: str, days_ago: int, value: float | None = None, unit: str | None = None) -> dict:
    r: dict = {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{PID}"},
               "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": day(days_ago)}
    if unit:
        r["valueQuantity"] = {"value": value, "unit": unit, "code": unit, "system": "http://unitsofmeasure.org"}
    else:
        r["valueInteger"] = int(value or 0)
    return r


def med(mid: str, rxcui: str, text: str, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{PID}"},
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": rxcui}], "text": text}}


BASE = [cond("breast", SCT, "254837009"), cond("bone", ICD, "C79.51")]


def facts(*resources: dict):
    return build_facts([*BASE, *resources], patient_id=PID, now=NOW, terminology=get_terminology(), **WINDOWS)


def test_in_scope_needs_breast_primary_and_metastasis() -> None:
    assert facts().in_scope
    only_bone = build_facts([cond("bone", ICD, "C79.51")], patient_id=PID, now=NOW, terminology=get_terminology(),
                            **WINDOWS)
    assert not only_bone.in_scope
    icd_no_dot = build_facts([cond("b", ICD, "C50911"), cond("m", SCT, "94225005")], patient_id=PID, now=NOW,
                             terminology=get_terminology(), **WINDOWS)
    assert icd_no_dot.in_scope and icd_no_dot.has_site("brain")


@pytest.mark.parametrize("verification,status,counts", [
    ("entered-in-error", "active", False), ("refuted", "active", False), ("confirmed", "resolved", False),
    ("confirmed", "inactive", False), ("confirmed", "active", True), (None, "active", True),
])
def test_condition_status_is_honoured(verification: str | None, status: str, counts: bool) -> None:
    f = build_facts([cond("breast", SCT, "254837009"), cond("m", SCT, "94381002", status=status,
                                                             verification=verification)],
                    patient_id=PID, now=NOW, terminology=get_terminology(), **WINDOWS)
    assert f.has_site("liver") is counts


def test_mcode_body_site_gives_the_site() -> None:
    f = facts(cond("generic", SCT, "128462008", body_site=(SCT, "12738006")))
    assert f.has_site("brain") or f.has_site("other")


def test_other_patients_resources_are_ignored() -> None:
    other = cond("x", SCT, "94225005")
    other["subject"] = {"reference": "Patient/someone-else"}
    assert not facts(other).has_site("brain")


# 3.5 is mild: "moderate" starts at the one cut-off the bone-pain and liver rules use too (PAIN_MODERATE).
@pytest.mark.parametrize("score,severity", [(0, "none"), (3, "mild"), (3.5, "mild"), (4, "moderate"), (6, "moderate"),
                                            (7, "severe"), (10, "severe"), (None, "unknown")])
def test_pain_severity_bands(score: float | None, severity: str) -> None:
    assert severity_of(score) == severity


@pytest.mark.parametrize("score,drugs,step,target", [
    (3, [], 0, None),
    (4, [med("m1", "161", "Acetaminophen 500 MG Oral Tablet")], 1, 2),
    (6, [med("m1", "10689", "Tramadol 50 MG Oral Capsule")], 2, None),
    (7, [med("m1", "10689", "Tramadol 50 MG Oral Capsule")], 2, 3),
    (8, [med("m1", "7052", "Morphine sulfate 10 MG Oral Tablet")], 3, None),
    (5, [], 0, 2),
    (7, [], 0, 3),
])
def test_pain_ladder(score: int, drugs: list[dict], step: int, target: int | None) -> None:
    p = pain_status(facts(obs("pain", "72514-3", 2, score), *drugs))
    assert p.step == step
    assert p.target_step == target


def test_stopped_medication_does_not_count() -> None:
    assert pain_status(facts(med("m1", "7052", "Morphine", status="stopped"))).step == 0


def test_drug_recognised_by_text_when_code_unknown() -> None:
    f = facts({**med("m1", "999999999", "Levetiracetam 500 mg tablet"), "medicationCodeableConcept": {
        "text": "Levetiracetam 500 mg tablet"}})
    assert f.on_drug("anticonvulsant")


def test_ecog_worse_by_exactly_one_is_acute_and_zero_is_not() -> None:
    acute = determine_phase(facts(obs("e1", "89247-1", 60, 1), obs("e2", "89247-1", 5, 2)))
    assert acute.name == "acute" and [e.code for e in acute.evidence] == ["A4"]
    same = determine_phase(facts(obs("e1", "89247-1", 60, 2), obs("e2", "89247-1", 5, 2)))
    assert same.name == "stable"


def test_pain_up_two_is_acute_and_up_one_is_not() -> None:
    assert determine_phase(facts(obs("a", "72514-3", 20, 3), obs("b", "72514-3", 2, 5))).name == "acute"
    assert determine_phase(facts(obs("a", "72514-3", 20, 3), obs("b", "72514-3", 2, 4))).name == "stable"
    assert determine_phase(facts(obs("b", "72514-3", 2, 7))).name == "acute"
    assert determine_phase(facts(obs("b", "72514-3", 2, 6))).name == "stable"


@pytest.mark.parametrize("value,unit,high,severe", [
    (10.4, "mg/dL", False, False), (10.5, "mg/dL", True, False), (12.0, "mg/dL", True, False),
    (12.1, "mg/dL", True, True), (2.6, "mmol/L", False, False), (2.61, "mmol/L", True, False),
    (3.0, "mmol/L", True, False), (3.01, "mmol/L", True, True),
])
def test_calcium_thresholds_in_both_units(value: float, unit: str, high: bool, severe: bool) -> None:
    ca = latest_calcium(facts(obs("ca", "17861-6", 3, value, unit)))
    assert ca is not None and ca.high is high and ca.severe is severe
    assert (determine_phase(facts(obs("ca", "17861-6", 3, value, unit))).name == "acute") is high


def test_calcium_is_corrected_for_albumin() -> None:
    # 2.5 mmol/L with albumin 30 g/L -> 2.5 + 0.02 * 10 = 2.7 (high)
    ca = latest_calcium(facts(obs("ca", "17861-6", 3, 2.5, "mmol/L"), obs("alb", "1751-7", 3, 30, "g/L")))
    assert ca is not None and ca.corrected and ca.high and abs(ca.mmol - 2.7) < 1e-6


def test_calcium_outside_window_is_ignored() -> None:
    assert latest_calcium(facts(obs("ca", "17861-6", 31, 3.2, "mmol/L"))) is None


@pytest.mark.parametrize("days,acute", [(29, True), (30, True), (31, False)])
def test_new_site_window_edge(days: int, acute: bool) -> None:
    f = facts(cond("liver", SCT, "94381002", onset_days=days), obs("e", "89247-1", 5, 1))
    assert (determine_phase(f).name == "acute") is acute


def test_unknown_phase_without_assessments() -> None:
    assert determine_phase(facts()).name == "unknown"
    assert determine_phase(facts(obs("e", "89247-1", 91, 1))).name == "unknown"
    assert determine_phase(facts(obs("e", "89247-1", 89, 1))).name == "stable"


def test_weight_loss_percent() -> None:
    w = weight_loss(facts(obs("w1", "29463-7", 80, 70, "kg"), obs("w2", "29463-7", 2, 66, "kg")))
    assert w is not None and w.percent == pytest.approx(5.7, abs=0.1)


def test_garbage_resources_are_noted_not_fatal() -> None:
    f = build_facts([*BASE, "text", 42, {"no": "type"}, {"resourceType": "Condition", "code": "not-an-object"},
                     {"resourceType": "Observation", "code": {"coding": "x"}, "valueInteger": "5"}],
                    patient_id=PID, now=NOW, terminology=get_terminology(), **WINDOWS)
    assert f.in_scope
    assert sum(g.count for g in f.gaps if g.kind != "unclassified") >= 2


def test_stage_iv_stage_group_counts_as_metastatic() -> None:
    stage = {"resourceType": "Observation", "id": "sg", "status": "final", "subject": {"reference": f"Patient/{PID}"},
             "code": {"coding": [{"system": LOINC, "code": "21908-9"}]}, "effectiveDateTime": day(100),
             "valueCodeableConcept": {"coding": [{"system": SCT, "code": "258228008"}]}}
    f = build_facts([cond("breast", SCT, "254837009"), stage], patient_id=PID, now=NOW, terminology=get_terminology(),
                    **WINDOWS)
    assert f.in_scope and f.staging_m1 and not f.sites
