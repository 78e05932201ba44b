"""Reading the record the way EHR data is written (clinical rules v2 sections 1, 2, 7): medications by product,
brand and free text, allergies, renal function, treatments on record, code status, site-local codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.clinical.draft_safety import draft_blockers
from app.clinical.evaluation import evaluate_patient
from app.clinical.facts import SITES, TREATMENTS, PatientFacts, build_facts
from app.clinical.gaps import gap_lines
from app.clinical.medications import classify_medication
from app.clinical.predicates import PREDICATES
from app.engine.predicates import compile_condition
from terminology import ICD10CM, LOINC, RXNORM, SNOMED, get_terminology
from terminology.local_codes import LocalCodesError, load_local_codes, read_local_codes
from tests.conftest import make_settings

NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
PID = "p1"
# The deployment defaults (Settings.acute_window_days / assessment_window_days).
WINDOWS = {"acute_window": timedelta(days=30), "assessment_window": timedelta(days=90)}
T = get_terminology()
EXAMPLE_LOCAL = Path(__file__).resolve().parents[1] / "docs" / "examples" / "local-codes.json"


def _day(n: int) -> str:
    return (NOW - timedelta(days=n)).isoformat()


def _cond(rid: str, system: str, code: str, days: int = 10, **extra: Any) -> dict[str, Any]:
    r = {"resourceType": "Condition", "id": rid, "subject": {"reference": f"Patient/{PID}"},
         "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": _day(days)}
    r.update(extra)
    return r


def _facts(*resources: dict[str, Any], terminology: Any = T) -> PatientFacts:
    return build_facts(list(resources), patient_id=PID, now=NOW, terminology=terminology, **WINDOWS)


def _med(cc: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                         "subject": {"reference": f"Patient/{PID}"}}
    if cc is not None:
        r["medicationCodeableConcept"] = cc
    r.update(extra)
    return r


BREAST = _cond("c-breast", ICD10CM, "C50.912", 400)
BONE = _cond("c-bone", ICD10CM, "C79.51", 100)


# -- linear fact building (issue 16 item 2) -----------------------------------------------------------------
def test_twenty_thousand_conditions_with_distinct_refs_are_all_kept_in_order() -> None:
    n = 20_000
    conditions = [_cond(f"c{i}", ICD10CM, "C79.51", days=1 + i % 300) for i in range(n)]
    facts = _facts(BREAST, *conditions)
    bone = facts.sites["bone"]
    assert len(bone.refs) == n
    assert bone.refs[:3] == ["Condition/c0", "Condition/c1", "Condition/c2"]
    assert len(set(bone.refs)) == n
    assert bone.first == NOW - timedelta(days=300)
    assert bone.last == NOW - timedelta(days=1)
    # The same ref twice is kept once.
    again = _facts(BREAST, conditions[0], conditions[0])
    assert again.sites["bone"].refs == ["Condition/c0"]


# -- scope (section 1 v2) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["C77.0", "C77.1", "C77.3", "C77.8", "C77.9"])
def test_regional_nodes_are_not_metastatic(code: str) -> None:
    assert not _facts(BREAST, _cond("n", ICD10CM, code)).in_scope


@pytest.mark.parametrize("code", ["C77.2", "C77.4", "C77.5"])
def test_distant_nodes_are_metastatic(code: str) -> None:
    assert _facts(BREAST, _cond("n", ICD10CM, code)).in_scope


def test_generic_secondary_code_on_a_regional_node_body_site_is_not_metastatic() -> None:
    node = _cond("n", SNOMED, "128462008",
                 bodySite=[{"coding": [{"system": SNOMED, "code": "68171009"}]}])
    assert not _facts(BREAST, node).in_scope


def test_history_of_breast_cancer_plus_distant_metastasis_is_recurrence() -> None:
    history = _cond("h", ICD10CM, "Z85.3", 3000)
    facts = _facts(history, BONE)
    # The history code stands in for the breast primary: it is what puts the patient in scope.
    assert facts.in_scope
    assert [d.ref for d in facts.breast_primary] == ["Condition/h"]
    assert not _facts(history).in_scope
    assert not _facts(history, _cond("n", ICD10CM, "C77.3")).in_scope
    assert [d.ref for d in _facts(_cond("h2", SNOMED, "415076002", 3000), BONE).breast_primary] == ["Condition/h2"]
    assert not _facts(_cond("fh", SNOMED, "429740004", 3000), BONE).in_scope  # family history
    primary = _facts(BREAST, history, BONE)
    assert primary.in_scope and [d.ref for d in primary.breast_primary] == ["Condition/c-breast"]


@pytest.mark.parametrize("code", ["93884005", "408643008", "278054005", "372098003", "93796005"])
def test_snomed_breast_primaries_including_male_and_ductal(code: str) -> None:
    assert _facts(_cond("b", SNOMED, code), BONE).in_scope


def test_icdo3_morphology_and_mcode_primary_with_breast_site() -> None:
    icdo = {"resourceType": "Condition", "id": "b", "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/icd-o-3", "code": "8500/3"}]},
            "bodySite": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/icd-o-3", "code": "C50.9"}]}]}
    assert _facts(icdo, BONE).in_scope
    benign = json.loads(json.dumps(icdo))
    benign["code"]["coding"][0]["code"] = "8500/2"  # in situ
    assert not _facts(benign, BONE).in_scope
    mcode = {"resourceType": "Condition", "id": "b2", "subject": {"reference": f"Patient/{PID}"},
             "meta": {"profile": ["http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"]},
             "code": {"text": "Breast cancer"}, "bodySite": [{"coding": [{"system": SNOMED, "code": "76752008"}]}]}
    assert _facts(mcode, BONE).in_scope


def test_condition_stage_summary_stage_iv_counts() -> None:
    staged = dict(BREAST, stage=[{"summary": {"coding": [{"system": SNOMED, "code": "258228008"}]}}])
    assert _facts(staged).in_scope
    assert not _facts(BREAST).in_scope


def test_ajcc_stage_iv_value_puts_patient_in_scope() -> None:
    stage = {"resourceType": "Observation", "id": "s", "status": "final", "subject": {"reference": f"Patient/{PID}"},
             "code": {"coding": [{"system": SNOMED, "code": "399537006"}]}, "effectiveDateTime": _day(30),
             "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "1222837003"}]}}
    assert _facts(BREAST, stage).in_scope


# -- medications (section 2 v2) ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "classes", "ingredients"), [
    ("MST Continus 30mg bd", {"strong-opioid"}, {"morphine"}),
    ("Zomorph 10 mg capsules", {"strong-opioid"}, {"morphine"}),
    ("Oramorph 10mg/5ml", {"strong-opioid"}, {"morphine"}),
    ("Sevredol 10mg", {"strong-opioid"}, {"morphine"}),
    ("OxyContin 10mg", {"strong-opioid"}, {"oxycodone"}),
    ("OxyNorm liquid", {"strong-opioid"}, {"oxycodone"}),
    ("Durogesic DTrans 25 micrograms/hour", {"strong-opioid"}, {"fentanyl"}),
    ("Zometa 4mg infusion", {"bone-modifying-agent"}, {"zoledronic acid"}),
    ("Xgeva 120mg", {"bone-modifying-agent"}, {"denosumab"}),
    ("Senokot 7.5mg", {"laxative", "stimulant-laxative"}, {"senna"}),
    ("Movicol sachets", {"laxative"}, {"polyethylene glycol 3350"}),
    ("Laxido", {"laxative"}, {"polyethylene glycol 3350"}),
    ("Dulcolax 5mg", {"laxative", "stimulant-laxative"}, {"bisacodyl"}),
    ("co-codamol 30/500", {"weak-opioid", "non-opioid-analgesic"}, {"codeine", "acetaminophen"}),
    ("Tylenol #3", {"weak-opioid", "non-opioid-analgesic"}, {"codeine", "acetaminophen"}),
    ("Tylenol 500 mg", {"non-opioid-analgesic"}, {"acetaminophen"}),
    ("Percocet 5/325", {"strong-opioid", "non-opioid-analgesic"}, {"oxycodone", "acetaminophen"}),
])
def test_brand_and_free_text_names(text: str, classes: set[str], ingredients: set[str]) -> None:
    med = classify_medication(_med({"text": text}), T)
    assert med.classified
    assert set(med.classes) == classes
    assert set(med.ingredients) == ingredients


@pytest.mark.parametrize("text", ["Amstrad MSTX", "Zomorphine-like", "dihydrocodeine 30mg", "Xgevas"])
def test_names_match_whole_words_only(text: str) -> None:
    med = classify_medication(_med({"text": text}), T)
    assert "strong-opioid" not in med.classes and "bone-modifying-agent" not in med.classes
    if text.startswith("dihydrocodeine"):
        assert med.ingredients == {"dihydrocodeine"}


def test_product_codes_classify_without_text() -> None:
    for code, ingredient in (("1049621", "oxycodone"), ("892573", "morphine"), ("993836", "codeine"),
                             ("892582", "morphine"), ("245135", "fentanyl"), ("835603", "tramadol")):
        med = classify_medication(_med({"coding": [{"system": RXNORM, "code": code}]}), T)
        assert med.classified and ingredient in med.ingredients, code


def test_contained_and_bundle_medications() -> None:
    contained = _med(None, medicationReference={"reference": "#m"},
                     contained=[{"resourceType": "Medication", "id": "m",
                                 "code": {"coding": [{"system": RXNORM, "code": "7052"}]}}])
    assert classify_medication(contained, T).classes == {"strong-opioid"}
    by_ref = _med(None, medicationReference={"reference": "Medication/x"})
    bundle = {"Medication/x": {"resourceType": "Medication", "id": "x", "code": {"text": "Unnamed"},
                               "ingredient": [{"itemCodeableConcept": {"text": "Senna"}}]}}
    assert classify_medication(by_ref, T, bundle_medications=bundle).classes == {"laxative", "stimulant-laxative"}
    facts = _facts(BREAST, BONE, {"resourceType": "Medication", "id": "x", "code": {"text": "Oramorph"}},
                   _med(None, medicationReference={"reference": "Medication/x"}))
    assert facts.on_drug("strong-opioid") and facts.medications_complete


def test_unclassified_medication_makes_the_list_incomplete() -> None:
    facts = _facts(BREAST, BONE, _med({"text": "Mystery tonic"}))
    assert not facts.medications_complete
    assert [(d.ref, d.label) for d in facts.unclassified_medications] == [("MedicationStatement/m1", "Mystery tonic")]
    assert facts.gaps[0].kind == "unclassified" and facts.gaps[0].count == 1
    code_only = _facts(BREAST, BONE, _med({"coding": [{"system": RXNORM, "code": "99999999"}]}))
    assert code_only.unclassified_medications[0].label == "RxNorm 99999999"
    known = _facts(BREAST, BONE, _med({"text": "Letrozole 2.5 mg"}))
    assert known.medications_complete and not known.drugs
    unresolved = _facts(BREAST, BONE, _med(None, medicationReference={"reference": "Medication/missing"}))
    assert not unresolved.medications_complete


def test_negated_drug_class_is_not_claimed_when_medications_are_incomplete() -> None:
    def ev(*meds: dict[str, Any]) -> Any:
        return evaluate_patient([BREAST, BONE, *meds], patient_id=PID, now=NOW, terminology=T,
                                acute_window=timedelta(days=30), assessment_window=timedelta(days=90),
                                acp_revisit=timedelta(days=182))
    not_laxative = compile_condition("not OnDrugClass(laxative)", PREDICATES)
    assert not_laxative(ev()) is not None
    assert not_laxative(ev(_med({"text": "Mystery tonic"}))) is None
    data_incomplete = compile_condition("DataIncomplete", PREDICATES)
    lines = data_incomplete(ev(_med({"text": "Mystery tonic"})))
    assert lines and "Mystery tonic" in lines[0].text and lines[0].refs == ("MedicationStatement/m1",)


def test_an_unreadable_entry_makes_its_type_unreadable_for_absence_claims() -> None:
    """A Condition the fact pass could not read may be the seizure: "no seizure on record" is not claimed, the
    phase says it rests on part of the record, and scope cannot be ruled out."""
    from app.clinical.predicates.phase import phase_basis, scope_unreadable

    def ev(*extra: Any) -> Any:
        return evaluate_patient([BREAST, BONE, *extra], patient_id=PID, now=NOW, terminology=T,
                                acute_window=timedelta(days=30), assessment_window=timedelta(days=90),
                                acp_revisit=timedelta(days=182))
    no_seizure = compile_condition("not HasComplication(seizure)", PREDICATES)
    whole = ev()
    assert no_seizure(whole) is not None and not scope_unreadable(whole)
    broken = ev({"resourceType": "Condition", "id": "c-x", "code": {"text": "seizure"}, "bodySite": 5})
    assert "Condition" in broken.unreadable_types and "Condition with an unreadable structure" in gap_lines(broken.gaps)
    assert no_seizure(broken) is None and scope_unreadable(broken)
    assert phase_basis(broken)[0].text.startswith("phase judged on part of the record: Condition")


# -- allergies and renal function ----------------------------------------------------------------------------
def _allergy(text: str, verification: str = "confirmed", clinical: str = "active", **extra: Any) -> dict[str, Any]:
    r = {"resourceType": "AllergyIntolerance", "id": f"a-{text.lower()}", "patient": {"reference": f"Patient/{PID}"},
         "clinicalStatus": {"coding": [{"code": clinical}]}, "verificationStatus": {"coding": [{"code": verification}]},
         "code": {"text": text}, "recordedDate": _day(300)}
    r.update(extra)
    return r


def test_allergies_by_ingredient_class_and_status() -> None:
    facts = _facts(_allergy("Morphine", reaction=[{"manifestation": [{"text": "rash"}]}], criticality="low"))
    morphine = facts.allergy_to("morphine", None)
    assert morphine is not None and morphine.reaction == "rash" and morphine.criticality == "low"
    assert facts.allergy_to(None, "strong-opioid") is morphine
    assert facts.allergy_to("codeine", "weak-opioid") is None
    coded = _facts({"resourceType": "AllergyIntolerance", "id": "s", "patient": {"reference": f"Patient/{PID}"},
                    "code": {"coding": [{"system": SNOMED, "code": "373529000"}]}})
    assert coded.allergy_to("morphine", None) is not None and coded.allergies[0].label == "SNOMED CT 373529000"
    opioids = _facts(_allergy("Opioids"))
    assert opioids.allergy_to(None, "weak-opioid") is not None and opioids.allergy_to(None, "strong-opioid")
    for verification, clinical in (("refuted", "active"), ("entered-in-error", "active"), ("confirmed", "resolved")):
        assert _facts(_allergy("Morphine", verification, clinical)).allergies == []


def _draft(rxcui: str, display: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "status": "draft", "intent": "proposal",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui, "display": display}]}}


def _egfr(value: float, days: int, code: str = "62238-1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"e{days}", "status": "final",
            "subject": {"reference": f"Patient/{PID}"}, "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": _day(days), "valueQuantity": {"value": value, "unit": "mL/min/{1.73_m2}"}}


def test_renal_impairment_blocks_morphine_and_zoledronic_acid_drafts_only() -> None:
    facts = _facts(_egfr(24, 10))
    assert facts.renal_impairment_severe() is not None
    assert draft_blockers(facts, _draft("7052", "morphine"), T)
    assert draft_blockers(facts, _draft("77655", "zoledronic acid"), T)
    assert draft_blockers(facts, _draft("36387", "senna"), T) == []
    assert _facts(_egfr(24, 100)).renal_impairment_severe() is None          # outside 90 days
    assert _facts(_egfr(24, 60), _egfr(45, 5)).renal_impairment_severe() is None  # latest is fine
    assert _facts(_egfr(28, 5, code="2164-2")).renal_impairment_severe() is not None  # creatinine clearance


def test_allergy_blocks_the_draft_and_names_the_allergy() -> None:
    facts = _facts(_allergy("Morphine", reaction=[{"manifestation": [{"text": "anaphylaxis"}]}]))
    blocked = draft_blockers(facts, _draft("7052", "morphine"), T)
    assert len(blocked) == 1 and "Morphine" in blocked[0].text and "anaphylaxis" in blocked[0].text
    assert blocked[0].refs == ("AllergyIntolerance/a-morphine",)
    assert draft_blockers(facts, _draft("161", "acetaminophen"), T) == []


# -- treatments, code status, complications ------------------------------------------------------------------
def _procedure(rid: str, text: str, status: str = "completed", days: int = 20, **extra: Any) -> dict[str, Any]:
    r = {"resourceType": "Procedure", "id": rid, "status": status, "subject": {"reference": f"Patient/{PID}"},
         "code": {"text": text}, "performedDateTime": _day(days)}
    r.update(extra)
    return r


def test_treatments_on_record() -> None:
    facts = _facts(
        _procedure("rt1", "Palliative radiotherapy 8 Gy single fraction to L2 vertebra", days=40),
        _procedure("rt2", "Whole brain radiotherapy (WBRT) 20 Gy in 5", days=10),
        _procedure("rt3", "Stereotactic radiosurgery", status="in-progress", days=2),
        _procedure("rt4", "External beam radiotherapy", days=5,
                   bodySite=[{"coding": [{"system": SNOMED, "code": "71341001"}]}]),
        _procedure("x1", "Talc pleurodesis", status="not-done"),
        {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
         "subject": {"reference": f"Patient/{PID}"}, "authoredOn": _day(3),
         "code": {"coding": [{"system": SNOMED, "code": "91602002"}]}},
    )
    assert set(facts.treatments) <= set(TREATMENTS)
    assert [d.ref for d in facts.treatment("radiotherapy-bone")] == ["Procedure/rt1", "Procedure/rt4"]
    assert [d.ref for d in facts.treatment("radiotherapy-bone", since=NOW - timedelta(days=30))] == ["Procedure/rt4"]
    assert [d.ref for d in facts.treatment("radiotherapy-brain")] == ["Procedure/rt2"]
    assert [d.ref for d in facts.treatment("radiotherapy-stereotactic")] == ["Procedure/rt3"]
    assert [d.ref for d in facts.treatment("thoracentesis")] == ["ServiceRequest/sr1"]
    assert facts.treatment("pleurodesis") == []


def test_code_status_from_condition_and_dnr_order() -> None:
    assert _facts(_cond("z", ICD10CM, "Z66")).acp.get("code-status")
    assert _facts(_cond("n", SNOMED, "304253006")).acp.get("code-status")
    order = {"resourceType": "ServiceRequest", "id": "dnr", "status": "active", "intent": "order",
             "subject": {"reference": f"Patient/{PID}"}, "authoredOn": _day(5),
             "code": {"coding": [{"system": LOINC, "code": "81351-9"}]}}
    assert [d.ref for d in _facts(order).acp["code-status"]] == ["ServiceRequest/dnr"]


@pytest.mark.parametrize(("system", "code", "complication"), [
    (ICD10CM, "M54.16", "back-pain"), (ICD10CM, "M54.50", "back-pain"), (SNOMED, "279039007", "back-pain"),
    (ICD10CM, "M54.2", "back-pain"), (ICD10CM, "G83.4", "neuro-deficit"), (ICD10CM, "R33.9", "neuro-deficit"),
    (ICD10CM, "G82.20", "neuro-deficit"), (ICD10CM, "R15.9", "neuro-deficit"), (ICD10CM, "R53.0", "fatigue"),
    (SNOMED, "84229001", "fatigue"), (ICD10CM, "M84.551A", "long-bone-fracture"),
    (ICD10CM, "M48.50XA", "vertebral-fracture"),
])
def test_v2_complications(system: str, code: str, complication: str) -> None:
    facts = _facts(_cond("a", system, code, 50), _cond("b", system, code, 5))
    fact = facts.complications[complication]
    assert fact.first == NOW - timedelta(days=50) and fact.last == NOW - timedelta(days=5)


# -- site-local codes (section 7) ----------------------------------------------------------------------------
def test_local_codes_example_adds_a_distress_thermometer_code() -> None:
    t = load_local_codes(EXAMPLE_LOCAL, T)
    system = "http://hospital.example.org/fhir/CodeSystem/flowsheet-rows"
    assert "obs-distress" in t.concepts(system, "DT-0-10")
    assert T.concepts(system, "DT-0-10") == frozenset()  # the shared instance is untouched
    obs = {"resourceType": "Observation", "id": "d", "status": "final", "subject": {"reference": f"Patient/{PID}"},
           "code": {"coding": [{"system": system, "code": "DT-0-10"}]}, "effectiveDateTime": _day(2),
           "valueInteger": 7}
    assert _facts(obs, terminology=t).latest("distress") is not None
    codes = [c["code"] for inc in t.valueset("obs-distress")["compose"]["include"] for c in inc.get("concept", [])]
    assert "DT-0-10" in codes


def test_local_codes_as_conceptmap(tmp_path: Path) -> None:
    cm = {"resourceType": "ConceptMap", "id": "site", "status": "active",
          "group": [{"source": "http://hospital.example.org/codes", "target": "http://mbc-cds.example.org/fhir/ValueSet",
                     "element": [{"code": "DNR1", "display": "DNR local",
                                  "target": [{"code": "acp-code-status", "equivalence": "equivalent"}]}]}]}
    path = tmp_path / "cm.json"
    path.write_text(json.dumps(cm))
    t = load_local_codes(path, T)
    assert "acp-code-status" in t.concepts("http://hospital.example.org/codes", "DNR1")


@pytest.mark.parametrize(("content", "message"), [
    ([{"concept": "no-such-concept", "system": "http://h.example/cs", "code": "X"}],
     "unknown concept 'no-such-concept'"),
    ([{"concept": "obs-distress", "system": "http://h.example/cs"}], "needs a non-empty string code"),
    ([{"concept": "obs-distress", "system": "http://h.example/cs", "code": "X", "colour": "red"}], "unknown keys"),
    ([{"concept": "obs-distress", "system": "not a uri", "code": "X"}], "is not a URI"),
    ({"resourceType": "Patient"}, "expected a FHIR ConceptMap or a JSON list"),
    ("not json", "cannot read JSON"),
])
def test_bad_local_codes_stop_start_up_with_a_clear_message(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "local.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(LocalCodesError, match="MBC_CDS_LOCAL_CODES") as info:
        read_local_codes(path, T)
    assert message in str(info.value)
    from app.main import create_app
    app = create_app(make_settings(tmp_path, local_codes=str(path)))
    with pytest.raises(LocalCodesError), TestClient(app):
        pass


def test_local_codes_are_served_on_the_valueset_endpoint(tmp_path: Path) -> None:
    from app.main import create_app
    app = create_app(make_settings(tmp_path, local_codes=str(EXAMPLE_LOCAL)))
    with TestClient(app) as client:
        vs = client.get("/fhir/ValueSet/obs-distress").json()
    added = [c for inc in vs["compose"]["include"] for c in inc.get("concept", []) if c["code"] == "DT-0-10"]
    assert added and added[0]["display"].startswith("Distress thermometer")


def test_sites_of_one_condition_are_listed_in_the_same_order_in_every_process() -> None:
    """One Condition naming several sites (a bone code with spine and liver body sites): the sites are kept in the
    fixed order of SITES, whatever the interpreter's hash seed, so two workers word the overview the same way."""
    spine, liver = (T.first_coding(c) for c in ("bodysite-spine", "bodysite-liver"))
    assert spine and liver
    code = ("import json, sys\n"
            "from tests.test_record_facts import BREAST, SNOMED, _cond, _facts\n"
            f"met = _cond('m', SNOMED, '94222008', bodySite=[{{'coding': [{spine!r}]}}, {{'coding': [{liver!r}]}}])\n"
            "print(json.dumps(list(_facts(BREAST, met).sites)))")
    root = Path(__file__).resolve().parent.parent
    orders = set()
    for seed in ("1", "2", "3", "4", "5", "6"):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        orders.add(out.stdout.strip())
    assert len(orders) == 1, orders
    sites = json.loads(orders.pop())
    assert sites == sorted(sites, key=SITES.index) and {"bone", "spine", "liver"} <= set(sites)
