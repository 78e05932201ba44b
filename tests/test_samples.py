"""The demo patients in app/samples: valid FHIR R4 transaction Bundles, honest codes, shiftable dates."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import simple_icd_10_cm as icd
from fhir.resources.R4B import get_fhir_model_class

from app.samples import REFERENCE_NOW, list_samples, sample_bundle, sample_ids, shift_dates

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# Every SNOMED CT, LOINC and RxNorm code the samples may use, with the terminology-sources.md source key
# it was read in (no code marked U there). ICD-10-CM codes are checked against simple-icd-10-cm instead.
ALLOWED_CODES: dict[str, dict[str, str]] = {
    SCT: {
        "353431000119107": "M EX_ExtendedExample.fsh (primary, female left breast)",
        "353511000119101": "E25 Malignant Neoplasms VS (primary, female right breast)",
        "254837009": "E25 (malignant neoplasm of breast)",
        "128462008": "M VS_CancerCondition.fsh (secondary malignant neoplastic disease)",
        "94222008": "E25 / IPS (bone)",
        "94602001": "E25 (vertebral column)",
        "94225005": "E25 / M (brain)",
        "94381002": "E25 (liver)",
        "94391008": "E25 (lung)",
        "94493005": "E25 (pleura)",
        "94579000": "E25 (skin)",
        "94627008": "E25 (peritoneum)",
        "94365007": "E25 (large intestine)",
        "860792009": "IPS (malignant pleural effusion)",
        "81060008": "GPS / IPS (intestinal obstruction)",
        "71286001": "GPS / IPS (spinal cord compression)",
        "66931009": "GPS / IPS (hypercalcaemia)",
        "2032001": "GPS / IPS (cerebral oedema)",
        "271299001": "M VS_Other.fsh (worsened)",
        "359746009": "M VS_Other.fsh (stable)",
        "399387003": "M VS_Staging_TNM.fsh (cM)",
        "1229901006": "M EX files (cM0)",
        "306237005": "E24 / E25 (referral to palliative care service)",
        "308440001": "GPS (social worker)",
        "308447003": "E25 (physiotherapist)",
        "103699006": "E25 (dietitian)",
        "306256000": "E25 (radiotherapist)",
        "183529009": "E25 (oncologist)",
    },
    LOINC: {
        "89247-1": "M (ECOG)",
        "72514-3": "E25 (pain 0-10)",
        "44261-6": "E25 / AHRQ (PHQ-9)",
        "70274-6": "AHRQ (GAD-7)",
        "17861-6": "Vulcan / PDDI (serum calcium)",
        "1751-7": "E24 (albumin)",
        "29463-7": "FHIR vital-signs profile bodyweight (body weight)",
        "97509-4": "M SD_DiseaseStatus.fsh (cancer disease progression)",
        "42348-3": "PAC (advance healthcare directives)",
        "81351-9": "PAC (DNR order in place)",
        "75780-7": "PAC (preferred location for final days)",
    },
    RXNORM: {
        "161": "CUM (acetaminophen)",
        "2670": "CDC / CPIC (codeine)",
        "10689": "CDC / CPIC (tramadol)",
        "7052": "CDC / CPIC (morphine)",
        "7804": "CDC / CPIC (oxycodone)",
        "36387": "CUM (sennosides)",
        "3264": "PDDI (dexamethasone)",
        "26225": "CPIC (ondansetron)",
        "5093": "CPIC (haloperidol)",
    },
}
STRUCTURAL_SYSTEMS = {
    "http://terminology.hl7.org/CodeSystem/condition-clinical",
    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "http://terminology.hl7.org/CodeSystem/condition-category",
    "http://terminology.hl7.org/CodeSystem/observation-category",
    "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "http://unitsofmeasure.org",
}

SAMPLES = list_samples()
IDS = [s["id"] for s in SAMPLES]


def _walk(node: Any, path: str = ""):
    """Yield (path, key, value) for every dict item in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _codings(node: Any):
    for _, key, value in _walk(node):
        if key == "coding" and isinstance(value, list):
            yield from value


def _resources(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"]]


def test_manifest_lists_eleven_samples_with_text() -> None:
    assert len(SAMPLES) == 11
    assert IDS == sample_ids()
    assert len(set(IDS)) == len(IDS)
    for s in SAMPLES:
        assert re.fullmatch(r"mbc-demo-\d{2}", s["id"])
        assert s["title"].strip() and len(s["title"]) < 120
        assert len(s["description"]) > 80
        assert isinstance(s["expected_rules"], list)
    assert sum(1 for s in SAMPLES if not s["expected_rules"]) == 1  # the non-metastatic patient


@pytest.mark.parametrize("sample_id", IDS)
def test_bundle_and_every_resource_validate_as_fhir_r4(sample_id: str) -> None:
    bundle = sample_bundle(sample_id)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    get_fhir_model_class("Bundle").model_validate(bundle)
    for resource in _resources(bundle):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("sample_id", IDS)
def test_entries_are_idempotent_puts_with_uuid_full_urls(sample_id: str) -> None:
    bundle = sample_bundle(sample_id)
    full_urls = set()
    ids = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        uuid.UUID(entry["fullUrl"].removeprefix("urn:uuid:"))
        full_urls.add(entry["fullUrl"])
        request = entry["request"]
        assert request["method"] == "PUT"
        assert request["url"] == f"{resource['resourceType']}/{resource['id']}"
        assert resource["id"] == sample_id or resource["id"].startswith(f"{sample_id}-")
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", resource["id"])
        ids.add(request["url"])
    assert len(full_urls) == len(bundle["entry"])
    assert len(ids) == len(bundle["entry"])


@pytest.mark.parametrize("sample_id", IDS)
def test_references_point_into_the_same_bundle(sample_id: str) -> None:
    bundle = sample_bundle(sample_id)
    resources = _resources(bundle)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert [p["id"] for p in patients] == [sample_id]
    present = {f"{r['resourceType']}/{r['id']}" for r in resources}
    references = [v for _, k, v in _walk(bundle) if k == "reference"]
    assert references
    for ref in references:
        assert ref in present, f"{ref} not in bundle"
        if ref.startswith("Patient/"):
            assert ref == f"Patient/{sample_id}"
    for r in resources:
        if r["resourceType"] != "Patient" and "subject" in r:
            assert r["subject"] == {"reference": f"Patient/{sample_id}"}


@pytest.mark.parametrize("sample_id", IDS)
def test_only_verified_codes(sample_id: str) -> None:
    for coding in _codings(sample_bundle(sample_id)):
        system, code = coding.get("system"), coding.get("code")
        assert system and code, coding
        if system in STRUCTURAL_SYSTEMS:
            continue
        if system == ICD:
            assert icd.is_valid_item(code), f"ICD-10-CM {code} not in simple-icd-10-cm"
            assert coding["display"] == icd.get_description(code)
            continue
        assert system in ALLOWED_CODES, f"unexpected code system {system}"
        assert code in ALLOWED_CODES[system], f"{system}|{code} is not a verified code"


def test_samples_cover_every_site_and_emergency() -> None:
    all_codes: dict[str, set[str]] = {}
    for s in SAMPLES:
        codes = {(c["system"], c["code"]) for c in _codings(s["bundle"])}
        all_codes[s["id"]] = {code for _, code in codes}
    union = set().union(*all_codes.values())
    for code in ["94222008", "94602001", "94225005", "94381002", "94391008", "94493005", "94579000",
                 "94627008", "128462008", "71286001", "66931009", "81060008", "R56.9", "R17", "860792009",
                 "R06.00", "I89.0", "306237005", "308440001", "308447003", "103699006", "42348-3",
                 "1229901006"]:
        assert code in union, code
    # the non-metastatic patient has a breast primary and no secondary neoplasm code
    no_mets = next(s for s in SAMPLES if not s["expected_rules"])
    assert "1229901006" in all_codes[no_mets["id"]]
    assert not any(c.startswith(("C77", "C78", "C79", "94", "128462008")) for c in all_codes[no_mets["id"]])


def test_calcium_and_clinical_values_are_plausible() -> None:
    calcium = []
    for s in SAMPLES:
        for r in _resources(s["bundle"]):
            if r["resourceType"] != "Observation":
                continue
            code = r["code"]["coding"][0]["code"]
            if code in {"89247-1"}:
                assert 0 <= r["valueInteger"] <= 5
            if code in {"72514-3"}:
                assert 0 <= r["valueInteger"] <= 10
            if code == "17861-6":
                assert r["valueQuantity"]["code"] == "mg/dL"
                calcium.append(r["valueQuantity"]["value"])
            if code == "29463-7":
                assert r["valueQuantity"]["code"] == "kg"
                assert "vital-signs" in json.dumps(r["category"])
    assert max(calcium) == 12.6


def _dated_values(bundle: dict) -> list[tuple[str, str]]:
    out = []
    for path, key, value in _walk(bundle):
        if key in {"onsetDateTime", "recordedDate", "effectiveDateTime", "issued", "authoredOn", "date"}:
            out.append((f"{path}.{key}", value))
        if key in {"start", "end"} and path.endswith("period"):
            out.append((f"{path}.{key}", value))
    return out


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("sample_id", IDS)
def test_all_dates_are_before_reference_now(sample_id: str) -> None:
    values = _dated_values(sample_bundle(sample_id))
    assert values
    for path, value in values:
        assert _parse(value) <= REFERENCE_NOW, (path, value)


def test_shift_dates_moves_the_timeline_but_not_birth_dates() -> None:
    original = sample_bundle("mbc-demo-01")
    snapshot = json.dumps(original, sort_keys=True)
    to = datetime(2027, 3, 5, 14, 30, tzinfo=UTC)
    shifted = shift_dates(original, to)
    assert json.dumps(original, sort_keys=True) == snapshot  # input untouched
    delta = to - REFERENCE_NOW
    before = dict(_dated_values(original))
    after = dict(_dated_values(shifted))
    assert before.keys() == after.keys()
    for path, value in before.items():
        assert _parse(after[path]) - _parse(value) == delta, path
        assert after[path].endswith("Z")
        assert _parse(after[path]) <= to
    patient_before = next(r for r in _resources(original) if r["resourceType"] == "Patient")
    patient_after = next(r for r in _resources(shifted) if r["resourceType"] == "Patient")
    assert patient_after["birthDate"] == patient_before["birthDate"]
    # the model still validates after shifting
    get_fhir_model_class("Bundle").model_validate(shifted)


def test_shift_dates_handles_date_only_naive_and_period_values() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {
            "resourceType": "Encounter", "id": "e", "status": "finished",
            "class": {"code": "EMER"},
            "period": {"start": "2026-11-10T08:15:00+02:00", "end": "2026-11-10"},
        }}, {"resource": {
            "resourceType": "Patient", "id": "p", "birthDate": "1960-01-01",
        }}],
    }
    shifted = shift_dates(bundle, datetime(2026, 11, 25, 9, 0))  # naive = UTC; 5 calendar days later
    period = shifted["entry"][0]["resource"]["period"]
    assert period["start"] == "2026-11-15T07:15:00+02:00"
    assert period["end"] == "2026-11-15"
    assert shifted["entry"][1]["resource"]["birthDate"] == "1960-01-01"
    assert shift_dates(bundle, REFERENCE_NOW) == bundle


def test_sample_bundle_with_now_looks_current() -> None:
    now = datetime.now(UTC)
    bundle = sample_bundle("mbc-demo-03", now=now)
    newest = max(_parse(v) for _, v in _dated_values(bundle))
    assert now - timedelta(days=2) <= newest <= now
    with pytest.raises(KeyError):
        sample_bundle("no-such-sample")


def test_list_samples_returns_fresh_copies() -> None:
    first = list_samples()
    first[0]["bundle"]["entry"].clear()
    assert list_samples()[0]["bundle"]["entry"]


@pytest.mark.parametrize("shift_days", [0, 45])
def test_samples_fire_exactly_their_expected_rules(shift_days: int) -> None:
    """The demo patients say what a clinician should expect; the engine agrees, today and after a date shift."""
    from datetime import UTC, datetime, timedelta

    from app.cli.evaluate import evaluate_bundle
    from app.samples import list_samples, sample_bundle

    now = datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(days=shift_days)
    for sample in list_samples():
        cards = evaluate_bundle(sample_bundle(sample["id"], now=now), now=now)
        assert sorted(c["source"]["topic"]["code"] for c in cards) == sorted(sample["expected_rules"]), sample["id"]
