"""Tests for the terminology package: ValueSet files, code provenance and the lookup API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import simple_icd_10_cm as icd
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.valueset import ValueSet

from terminology import (
    ICD10CM,
    ICDO3,
    LOCAL,
    LOINC,
    RXNORM,
    SNOMED,
    Terminology,
    TerminologyError,
    get_terminology,
)
from terminology.loader import EXT_CODE_SOURCE, EXT_EXCLUDE_TEXT, EXT_MATCH_NAME

ROOT = Path(__file__).resolve().parents[1]
TERM_DIR = ROOT / "terminology"
VS_DIR = TERM_DIR / "valuesets"
REFERENCE = ROOT / "docs" / "reference.md"

CONCEPT_IDS = {
    # conditions
    "breast-primary",
    "metastasis-any",
    "metastasis-bone",
    "metastasis-spine",
    "metastasis-brain",
    "metastasis-liver",
    "metastasis-lung",
    "metastasis-pleura",
    "metastasis-skin",
    "metastasis-peritoneum-bowel",
    "metastasis-other",
    # mCODE bodySite
    "bodysite-bone",
    "bodysite-spine",
    "bodysite-long-bone",
    "bodysite-brain",
    "bodysite-liver",
    "bodysite-lung",
    "bodysite-pleura",
    "bodysite-skin",
    "bodysite-peritoneum-bowel",
    # complications
    "cord-compression",
    "hypercalcaemia",
    "pathological-fracture",
    "bowel-obstruction",
    "seizure",
    "cerebral-oedema",
    "pleural-effusion",
    "jaundice",
    "pruritus",
    "nausea",
    "lymphoedema",
    "fungating-wound",
    "dyspnoea",
    "back-pain",
    "financial-concern",
    "spiritual-concern",
    # v2: scope, complications, treatments on record
    "history-breast-cancer",
    "regional-node",
    "bodysite-regional-node",
    "bodysite-breast",
    "fatigue",
    "neuro-deficit",
    "uncontrolled-local-disease",
    "long-bone-fracture",
    "vertebral-fracture",
    "treatment-radiotherapy",
    "treatment-radiotherapy-bone",
    "treatment-radiotherapy-brain",
    "treatment-radiotherapy-stereotactic",
    "treatment-neurosurgery",
    "treatment-orthopaedic-fixation",
    "treatment-thoracentesis",
    "treatment-pleurodesis",
    "treatment-biliary-stent",
    "obs-egfr",
    "obs-creatinine-clearance",
    "obs-fatigue-score",
    # observations
    "obs-ecog",
    "obs-karnofsky",
    "obs-pain-score",
    "obs-distress",
    "obs-phq9",
    "obs-phq2",
    "obs-gad7",
    "obs-calcium",
    "obs-corrected-calcium",
    "obs-albumin",
    "obs-spo2",
    "obs-body-weight",
    "obs-disease-status",
    "obs-tnm-m",
    "value-m1",
    "obs-stage-group",
    "value-stage-iv",
    "value-progressing",
    # drug classes
    "drug-non-opioid-analgesic",
    "drug-weak-opioid",
    "drug-strong-opioid",
    "drug-laxative",
    "drug-corticosteroid",
    "drug-anticonvulsant",
    "drug-bone-modifying-agent",
    "drug-antiemetic",
    "drug-antidepressant",
    # services
    "service-palliative-care",
    "service-hospice",
    "service-pain",
    "service-physiotherapy",
    "service-occupational-therapy",
    "service-social-work",
    "service-dietitian",
    "service-mental-health",
    "service-chaplaincy",
    "service-wound-care",
    "service-lymphoedema",
    "service-orthopaedics",
    "service-radiotherapy",
    "service-oncology",
    "service-key-worker",
    # advance care planning
    "acp-document",
    "acp-proxy",
    "acp-code-status",
    "acp-place-of-death",
    "acp-goals-of-care",
}
DRUG_CLASSES = {c for c in CONCEPT_IDS if c.startswith("drug-")}
KNOWN_SYSTEMS = {SNOMED, ICD10CM, LOINC, RXNORM, ICDO3, LOCAL}


def _files() -> list[Path]:
    return sorted(VS_DIR.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _icd_dotted(code: str) -> str:
    code = code.upper()
    return code if "." in code or len(code) <= 3 else f"{code[:3]}.{code[3:]}"


@pytest.fixture(scope="module")
def t() -> Terminology:
    return get_terminology()


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_valueset_validates_and_is_well_formed(path: Path) -> None:
    data = _load(path)
    ValueSet.model_validate(data)
    cid = path.stem
    assert data["id"] == cid
    assert data["url"] == f"http://mbc-cds.example.org/fhir/ValueSet/{cid}"
    assert data["status"] == "active"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,254}", data["name"])
    assert data["title"]
    desc = data["description"]
    assert "Sources" in desc and "Left out" in desc
    seen: set[tuple[str, str]] = set()
    for include in data["compose"]["include"]:
        assert include["system"] in KNOWN_SYSTEMS
        assert bool(include.get("concept")) != bool(include.get("filter"))
        for concept in include.get("concept", []):
            key = (include["system"], concept["code"])
            assert key not in seen, f"duplicate code {key}"
            seen.add(key)
            assert concept.get("display")
            sources = [e for e in concept.get("extension", []) if e["url"] == EXT_CODE_SOURCE]
            assert sources and sources[0]["valueString"], f"{key} has no code-source"
        for flt in include.get("filter", []):
            assert include["system"] == ICD10CM
            assert flt == {"property": "concept", "op": "is-a", "value": flt["value"]}
            assert any(e["url"] == EXT_CODE_SOURCE for e in include.get("extension", []))


def test_every_design_concept_has_exactly_one_valueset() -> None:
    assert {p.stem for p in _files()} == CONCEPT_IDS


def test_reference_md_concept_list_matches() -> None:
    if not REFERENCE.exists():
        pytest.skip("docs/reference.md not present")
    text = REFERENCE.read_text(encoding="utf-8")
    section = text.split("Concept ids (one ValueSet each):", 1)[1].split("## cds_hooks", 1)[0]
    ids = set(re.findall(r"`([a-z][a-z0-9-]+)`", section))
    assert ids == CONCEPT_IDS


def test_every_icd10cm_code_exists_in_simple_icd_10_cm() -> None:
    checked = 0
    for path in _files():
        for include in _load(path)["compose"]["include"]:
            if include["system"] != ICD10CM:
                continue
            values = [c["code"] for c in include.get("concept", [])] + [f["value"] for f in include.get("filter", [])]
            for value in values:
                assert icd.is_valid_item(_icd_dotted(value)), f"{path.name}: {value}"
                checked += 1
    assert checked > 50


def test_local_codesystem_defines_every_local_code() -> None:
    cs = _load(TERM_DIR / "codesystems" / "mbc-cds-local.json")
    CodeSystem.model_validate(cs)
    assert cs["url"] == LOCAL
    defined = {c["code"] for c in cs["concept"]}
    used = {
        c["code"]
        for p in _files()
        for inc in _load(p)["compose"]["include"]
        if inc["system"] == LOCAL
        for c in inc["concept"]
    }
    assert used == defined
    assert {"distress-thermometer", "fungating-wound", "spiritual-concern"} <= used


def test_sources_md_lists_every_code() -> None:
    table = (TERM_DIR / "SOURCES.md").read_text(encoding="utf-8")
    rows = {
        tuple(cell.strip() for cell in line.strip("|").split("|")[:3])
        for line in table.splitlines()
        if line.startswith("| ")
    }
    for path in _files():
        for inc in _load(path)["compose"]["include"]:
            for concept in inc.get("concept", []):
                assert any(r[0] == path.stem and r[2] == concept["code"] for r in rows), (path.stem, concept["code"])
            for flt in inc.get("filter", []):
                assert any(r[0] == path.stem and r[2] == f"{flt['value']} is-a" for r in rows), (path.stem, flt)


def test_drug_classes_are_flagged_for_ingredient_name_matching() -> None:
    for cid in DRUG_CLASSES:
        data = _load(VS_DIR / f"{cid}.json")
        flags = [e for e in data.get("extension", []) if e["url"] == EXT_MATCH_NAME]
        assert flags == [{"url": EXT_MATCH_NAME, "valueBoolean": True}], cid
        for inc in data["compose"]["include"]:
            assert inc["system"] in {RXNORM, LOCAL}, cid
            for concept in inc["concept"]:
                assert concept["display"] == concept["display"].lower(), (cid, concept)
    for path in _files():
        if path.stem not in DRUG_CLASSES:
            assert not any(e["url"] == EXT_MATCH_NAME for e in _load(path).get("extension", [])), path.stem


# ----------------------------------------------------------------------------- lookups


def test_all_concepts_loaded(t: Terminology) -> None:
    assert t.concept_ids == CONCEPT_IDS
    assert [v["id"] for v in t.all_valuesets()] == sorted(CONCEPT_IDS)


def test_snomed_only_lookup(t: Terminology) -> None:
    assert t.concepts(SNOMED, "94222008") == {"metastasis-bone"}
    assert t.concepts(SNOMED, "94602001") == {"metastasis-bone", "metastasis-spine"}
    assert t.concepts(SNOMED, "254837009") == {"breast-primary"}
    assert t.concepts(SNOMED, "315004001") == {"breast-primary", "metastasis-any"}
    assert t.concepts(SNOMED, "does-not-exist") == frozenset()
    assert isinstance(t.concepts(SNOMED, "94222008"), frozenset)


@pytest.mark.parametrize("code", ["C79.51", "C7951", "c79.51", " C79.51 "])
def test_icd10cm_lookup_with_and_without_dot(t: Terminology, code: str) -> None:
    assert t.concepts(ICD10CM, code) == {"metastasis-bone"}


def test_icd10cm_is_a_filters_are_expanded(t: Terminology) -> None:
    assert t.concepts(ICD10CM, "C50.911") == {"breast-primary"}
    assert t.concepts(ICD10CM, "C50") == {"breast-primary"}
    assert t.concepts(ICD10CM, "C78.01") == {"metastasis-lung"}
    assert t.concepts(ICD10CM, "M84.50XA") == {"pathological-fracture"}
    assert t.concepts(ICD10CM, "C77.3") == {"regional-node"}  # v2: N stage, not metastatic
    assert t.concepts(ICD10CM, "C77.2") == {"metastasis-other"}
    assert (ICD10CM, "C50911") in t.codes("breast-primary")
    assert len({c for s, c in t.codes("breast-primary") if s == ICD10CM}) == len(icd.get_descendants("C50")) + 1
    # a primary lung cancer is not a lung metastasis
    assert t.concepts(ICD10CM, "C34.90") == frozenset()


def test_system_spelling_variants(t: Terminology) -> None:
    assert t.concepts("https://snomed.info/sct", "94222008") == {"metastasis-bone"}
    assert t.concepts("http://snomed.info/sct/", "94222008") == {"metastasis-bone"}
    assert t.concepts(ICD10CM + "/", "C79.51") == {"metastasis-bone"}


def test_codeable_concept_with_several_codings(t: Terminology) -> None:
    cc = {
        "coding": [
            {"system": SNOMED, "code": "94222008", "display": "Secondary malignant neoplasm of bone"},
            {"system": ICD10CM, "code": "C79.51"},
            {"system": LOINC, "code": "89247-1"},
        ],
        "text": "bone mets",
    }
    assert t.concepts_of_codeable(cc) == {"metastasis-bone", "obs-ecog"}


def test_bodysite_and_icdo3(t: Terminology) -> None:
    assert t.concepts(SNOMED, "71341001") == {"bodysite-bone", "bodysite-long-bone"}
    assert t.concepts(SNOMED, "421060004") == {"bodysite-bone", "bodysite-spine"}
    assert t.concepts(ICDO3, "C41.2") == {"bodysite-bone", "bodysite-spine"}
    assert t.concepts(ICDO3, "C71.9") == {"bodysite-brain"}


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        5,
        "C79.51",
        [],
        ["x"],
        {},
        {"coding": None},
        {"coding": "C79.51"},
        {"coding": {"code": "C79.51"}},
        {
            "coding": [
                None,
                1,
                "x",
                [],
                {},
                {"system": 1, "code": 2},
                {"system": SNOMED},
                {"code": "94222008"},
                {"system": SNOMED, "code": None},
                {"system": None, "code": "94222008"},
                {"system": SNOMED, "code": ["94222008"]},
                {"system": ICD10CM, "code": ""},
            ]
        },
    ],
)
def test_garbage_codeable_concepts_give_empty_set(t: Terminology, garbage: object) -> None:
    assert t.concepts_of_codeable(garbage) == set()
    assert t.concepts_of_medication(garbage) == set()


def test_garbage_scalars(t: Terminology) -> None:
    assert t.concepts(None, None) == frozenset()
    assert t.concepts(SNOMED, 94222008) == frozenset()
    assert t.concepts(["x"], "1") == frozenset()
    for text in (None, 5, "", "   ", b"morphine", ["morphine"], {"text": "morphine"}):
        assert t.concepts_of_text(text) == set()
    assert t.display(None, "x") is None
    assert t.display(SNOMED, "nope") is None


# ----------------------------------------------------------------------------- text matching


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Morphine Sulfate 15 MG Oral Tablet", {"drug-strong-opioid"}),
        ("Paracetamol 500 mg", {"drug-non-opioid-analgesic"}),
        (
            "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet",
            {"drug-non-opioid-analgesic", "drug-strong-opioid"},
        ),
        ("Dihydrocodeine 30 mg tablets", {"drug-weak-opioid"}),
        ("HYDROmorphone 2 MG Oral Tablet", {"drug-strong-opioid"}),
        ("Senna-S 8.6 mg", {"drug-laxative"}),
        ("Sennosides 8.6 MG Oral Tablet", {"drug-laxative"}),
        ("Macrogol compound oral powder", {"drug-laxative"}),
        ("Dexamethasone 4 MG Oral Tablet", {"drug-corticosteroid"}),
        ("methylprednisolone 4 MG Oral Tablet", {"drug-corticosteroid"}),
        ("Zoledronic acid 4 MG Injection", {"drug-bone-modifying-agent"}),
        ("Denosumab 120 MG Injection", {"drug-bone-modifying-agent"}),
        ("Levetiracetam 500 MG Oral Tablet", {"drug-anticonvulsant"}),
        ("sodium valproate 200mg", {"drug-anticonvulsant"}),
        ("Ondansetron 4 MG Disintegrating Oral Tablet", {"drug-antiemetic"}),
        ("Mirtazapine 15 MG Oral Tablet", {"drug-antidepressant"}),
    ],
)
def test_text_matches_ingredient_names(t: Terminology, text: str, expected: set[str]) -> None:
    assert t.concepts_of_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Dexamethasone 1 MG/ML Ophthalmic Suspension",
        "prednisolone acetate 10 MG/ML Ophthalmic Suspension",
        "Diclofenac sodium 10 MG/ML Topical Gel",
        "morphinex",  # no partial-word match
        "Gabapentin 300 MG Oral Capsule",  # deliberately not an anticonvulsant here
        "Hydrocortisone 10 MG/ML Topical Cream",
        "metastatic breast cancer",
    ],
)
def test_text_non_matches(t: Terminology, text: str) -> None:
    assert t.concepts_of_text(text) == set()


def test_codeine_is_not_matched_inside_dihydrocodeine(t: Terminology) -> None:
    assert t.concepts_of_text("dihydrocodeine") == {"drug-weak-opioid"}
    assert "codeine" in t.ingredient_names()


def test_text_matching_only_uses_flagged_valuesets(t: Terminology) -> None:
    names = t.ingredient_names()
    assert set().union(*names.values()) <= DRUG_CLASSES
    assert t.name_match_concepts == DRUG_CLASSES
    # a condition display is not matched as text
    assert t.concepts_of_text("Secondary malignant neoplasm of bone") == set()


def test_medication_helper_uses_codes_text_and_displays(t: Terminology) -> None:
    cc = {
        "coding": [{"system": RXNORM, "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}],
        "text": "Oxycodone 5mg",
    }
    assert t.concepts_of_medication(cc) == {"drug-strong-opioid"}
    assert t.concepts_of_medication({"coding": [{"system": RXNORM, "code": "7052"}]}) == {"drug-strong-opioid"}
    assert t.concepts_of_medication({"text": "Senna 7.5 mg"}) == {"drug-laxative"}


# ----------------------------------------------------------------------------- mutually exclusive classes


def test_weak_and_strong_opioids_are_disjoint(t: Terminology) -> None:
    assert not t.codes("drug-weak-opioid") & t.codes("drug-strong-opioid")
    for name, cids in t.ingredient_names().items():
        assert not {"drug-weak-opioid", "drug-strong-opioid"} <= cids, name


def test_opioids_are_not_non_opioids(t: Terminology) -> None:
    opioids = t.codes("drug-weak-opioid") | t.codes("drug-strong-opioid")
    assert not opioids & t.codes("drug-non-opioid-analgesic")


def test_m1_values_do_not_overlap_m_category_codes(t: Terminology) -> None:
    assert not t.codes("value-m1") & t.codes("obs-tnm-m")


# ----------------------------------------------------------------------------- knowledge helpers


def test_first_coding(t: Terminology) -> None:
    assert t.first_coding("drug-strong-opioid") == {"system": RXNORM, "code": "7052", "display": "morphine"}
    assert t.first_coding("drug-non-opioid-analgesic")["code"] == "161"
    assert t.first_coding("drug-corticosteroid")["display"] == "dexamethasone"
    assert t.first_coding("breast-primary", ICD10CM) == {
        "system": ICD10CM,
        "code": "C50",
        "display": "Malignant neoplasm of breast",
    }
    assert t.first_coding("service-palliative-care", SNOMED)["code"] == "306237005"
    assert t.first_coding("obs-distress") == {
        "system": LOCAL,
        "code": "distress-thermometer",
        "display": "Distress thermometer score (0-10)",
    }
    assert t.first_coding("obs-ecog", RXNORM) is None
    assert t.first_coding("no-such-concept") is None
    coding = t.first_coding("drug-strong-opioid")
    coding["code"] = "mutated"
    assert t.first_coding("drug-strong-opioid")["code"] == "7052"


def test_display(t: Terminology) -> None:
    assert t.display(SNOMED, "94222008") == "Secondary malignant neoplasm of bone"
    assert t.display(ICD10CM, "C50911") == "Malignant neoplasm of unspecified site of right female breast"
    assert t.display(ICD10CM, "C79.51") == "Secondary malignant neoplasm of bone"


def test_valueset_returns_copies(t: Terminology) -> None:
    vs = t.valueset("obs-ecog")
    assert vs["resourceType"] == "ValueSet"
    vs["status"] = "retired"
    assert t.valueset("obs-ecog")["status"] == "active"
    with pytest.raises(KeyError):
        t.valueset("no-such-concept")
    with pytest.raises(KeyError):
        t.codes("no-such-concept")
    assert [cs["id"] for cs in t.codesystems()] == ["mbc-cds-local"]


def test_get_terminology_is_cached() -> None:
    assert get_terminology() is get_terminology()


def test_exclusion_extension_only_on_expected_classes() -> None:
    flagged = {p.stem for p in _files() if any(e["url"] == EXT_EXCLUDE_TEXT for e in _load(p).get("extension", []))}
    assert flagged == {"drug-corticosteroid", "drug-non-opioid-analgesic"}


# ----------------------------------------------------------------------------- loader errors


def _write(directory: Path, name: str, data: dict | str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (directory / f"{name}.json").write_text(text, encoding="utf-8")


def _minimal(cid: str, **compose: object) -> dict:
    return {
        "resourceType": "ValueSet",
        "id": cid,
        "url": f"http://mbc-cds.example.org/fhir/ValueSet/{cid}",
        "name": "Test",
        "status": "active",
        "compose": compose or {"include": [{"system": SNOMED, "concept": [{"code": "1", "display": "one"}]}]},
    }


def test_minimal_directory_loads(tmp_path: Path) -> None:
    _write(tmp_path, "x", _minimal("x"))
    t2 = Terminology(tmp_path)
    assert t2.concepts(SNOMED, "1") == {"x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "cannot read JSON"),
        ({"resourceType": "CodeSystem", "id": "bad"}, "not a FHIR ValueSet"),
        (
            {**_minimal("bad"), "compose": {"include": [{"system": SNOMED, "concept": [{"code": 5}]}]}},
            "invalid FHIR R4 ValueSet",
        ),
        ({**_minimal("bad"), "id": "other"}, "does not match the file name"),
        ({**_minimal("bad"), "status": "draft"}, "status must be 'active'"),
        ({**_minimal("bad"), "url": "http://example.org/x"}, "url must be"),
        (_minimal("bad", include=[{"system": ICD10CM, "concept": [{"code": "C99.999"}]}]), "not in simple_icd_10_cm"),
        (
            _minimal(
                "bad",
                include=[{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": "Q99.99"}]}],
            ),
            "not in simple_icd_10_cm",
        ),
        (
            _minimal(
                "bad",
                include=[{"system": SNOMED, "filter": [{"property": "concept", "op": "is-a", "value": "128462008"}]}],
            ),
            "can be expanded",
        ),
    ],
)
def test_invalid_valueset_names_the_file(tmp_path: Path, data: dict | str, message: str) -> None:
    _write(tmp_path, "bad", data)
    with pytest.raises(TerminologyError, match=message) as info:
        Terminology(tmp_path)
    assert "bad.json" in str(info.value)


def test_icd10cm_snapshot_matches_simple_icd_10_cm() -> None:
    """The shipped snapshot (fast start-up) says exactly what simple-icd-10-cm says for every code used."""
    import json
    from pathlib import Path

    from terminology import icd10cm

    codes, roots = icd10cm.referenced_codes(Path(icd10cm.__file__).parent / "valuesets")
    live = icd10cm.build_snapshot(codes, roots)
    shipped = json.loads(icd10cm.SNAPSHOT.read_text(encoding="utf-8"))
    assert shipped == live, "run: python -m terminology.icd10cm"
    assert all(live[c]["valid"] for c in codes + roots)
