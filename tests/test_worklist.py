"""Population worklist (issue 7): readers, agreement with the hook patient by patient, ranking, output files."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main as cli_main
from app.service.evaluate import RecordEvaluator
from app.service.factory import build_evaluator
from app.worklist.core import COLUMNS, HOOK_INSTANCE, make_settings, rank_rows, tier_of, top_card
from app.worklist.generate import generate
from app.worklist.local import run_local
from app.worklist.readers import PopulationReader, bundle_records, patient_of
from tests.conftest import NOW

POPULATION = 240


@pytest.fixture(scope="module")
def evaluator() -> RecordEvaluator:
    return build_evaluator(make_settings())


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("population")
    # split: Condition.000.ndjson, Condition.001.ndjson ... as a large $export writes them
    generate(out, POPULATION, seed=11, now=NOW, filler=2, split=400)
    return out


@pytest.fixture(scope="module")
def local_rows(population: Path, evaluator: RecordEvaluator) -> list[dict[str, Any]]:
    result = run_local(population, now=NOW, settings=make_settings(), progress=False, evaluator=evaluator)
    assert result.stats["patients"] == POPULATION
    return result.rows


def _naive_groups(directory: Path) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Independent of the reader: every resource whose subject/patient names the patient, plus every Medication."""
    patients: list[str] = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    medications: list[dict[str, Any]] = []
    for file in sorted(directory.glob("*.ndjson")):
        for line in file.read_bytes().splitlines():
            r = orjson.loads(line)
            if r["resourceType"] == "Patient":
                patients.append(r["id"])
                groups[r["id"]].append(r)
            elif r["resourceType"] == "Medication":
                medications.append(r)
            else:
                ref = (r.get("subject") or r.get("patient") or {}).get("reference", "")
                groups[ref.split("/", 1)[1]].append(r)
    for pid in groups:
        groups[pid].extend(medications)
    return patients, groups


def test_generated_files_look_like_a_bulk_export(population: Path) -> None:
    names = {p.name for p in population.iterdir()}
    assert "Patient.000.ndjson" in names and "manifest.json" in names
    assert {"Condition.000.ndjson", "Condition.001.ndjson"} <= names
    assert "Medication.000.ndjson" in names and "Immunization.000.ndjson" in names
    manifest = orjson.loads((population / "manifest.json").read_bytes())
    assert sum(o["count"] for o in manifest["output"] if o["type"] == "Patient") == POPULATION


def test_worklist_agrees_with_the_hook_patient_by_patient(population: Path, evaluator: RecordEvaluator,
                                                           local_rows: list[dict[str, Any]]) -> None:
    rows = {r["patient_id"]: r for r in local_rows}
    patients, groups = _naive_groups(population)
    assert len(patients) == POPULATION >= 200
    with_cards = 0
    for pid in patients:
        outcome = evaluator.evaluate(groups[pid], pid, NOW, hook_instance=HOOK_INSTANCE)
        expected = {f.rule.id for f in outcome.fired}
        if not outcome.cards:
            assert pid not in rows, f"{pid}: no cards from the hook but on the worklist"
            continue
        with_cards += 1
        row = rows[pid]
        assert set(row["rules"]) == expected, pid
        assert row["phase"] == outcome.evaluation.phase.name
        assert set(row["sites"]) == set(outcome.evaluation.facts.sites)
        assert row["emergencies"] == [f.rule.id for f in outcome.fired if f.rule.emergency]
        top = top_card(outcome.fired).card
        assert row["top_rule"] == top["source"]["topic"]["code"]
        assert row["top_summary"] == top["summary"]
        labels = [s["label"] for s in top.get("suggestions") or []]
        assert row["top_action"] == (labels[0] if labels else top["summary"])
        for part in row["why"].split("; "):
            assert part in top["detail"], (pid, part)
        # read from the fired rule's evidence, it says what the card's first list says
        assert row["why"] == _first_list(top["detail"]), pid
    assert with_cards == len(rows)
    assert 150 <= with_cards < POPULATION  # the population has patients out of scope too
    # a varied population: every tier, every phase, emergencies of more than one kind
    assert {r["tier"] for r in local_rows} == {1, 2, 3, 4}
    assert {r["phase"] for r in local_rows} >= {"acute", "stable"}
    assert len({e for r in local_rows for e in r["emergencies"]}) >= 2


def _first_list(detail: str) -> str:
    """The card's first Markdown list without its "Phase: ..." line, as a clinician reads it on the card."""
    lines = detail.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("- "))
    items: list[str] = []
    for line in lines[start:]:
        if not line.startswith("- "):
            break
        items.append(line[2:])
    return "; ".join(i for i in items if not i.startswith("Phase: "))


def test_ranking_order_of_the_population(local_rows: list[dict[str, Any]]) -> None:
    assert [r["rank"] for r in local_rows] == list(range(1, len(local_rows) + 1))
    keys = [(r["tier"], -(r["n_critical"] + r["n_warning"]), r["patient_id"]) for r in local_rows]
    assert keys == sorted(keys)
    for r in local_rows:
        assert r["tier"] == tier_of(r["rules"], r["phase"])


def _row(pid: str, rules: list[str], phase: str, crit: int = 0, warn: int = 0) -> dict[str, Any]:
    return {"patient_id": pid, "rules": rules, "phase": phase, "tier": tier_of(rules, phase),
            "n_critical": crit, "n_warning": warn}


def test_ranking_rules() -> None:
    rows = [
        _row("p-rest", ["mbc-overview", "key-worker"], "stable"),
        _row("p-acp-b", ["mbc-overview", "acp-stable"], "stable", warn=1),
        _row("p-acp-a", ["mbc-overview", "acp-stable"], "stable", warn=1),
        _row("p-acp-more", ["mbc-overview", "acp-acute"], "acute", warn=3),   # acute but palliative care on record
        _row("p-acute", ["mbc-overview", "referral-palliative-care"], "acute", warn=2),
        _row("p-stable-no-pc", ["mbc-overview", "referral-palliative-care"], "stable"),
        _row("p-emergency", ["emergency-hypercalcaemia", "mbc-overview"], "acute", warn=1),
        _row("p-emergency-crit", ["emergency-spinal-cord-compression"], "acute", crit=1, warn=1),
    ]
    order = [r["patient_id"] for r in rank_rows(rows)]
    assert order == ["p-emergency-crit", "p-emergency", "p-acute", "p-acp-more", "p-acp-a", "p-acp-b",
                     "p-rest", "p-stable-no-pc"]


def test_spilled_buckets_give_the_same_worklist(population: Path, evaluator: RecordEvaluator,
                                                local_rows: list[dict[str, Any]]) -> None:
    result = run_local(population, now=NOW, settings=make_settings(), progress=False, evaluator=evaluator,
                       bucket_bytes=64 * 1024)
    assert result.stats["buckets"] > 1 and result.stats["spilled_bytes"] > 0
    assert result.rows == local_rows


def test_bundle_directory_matches_ndjson(tmp_path: Path, evaluator: RecordEvaluator) -> None:
    generate(tmp_path / "nd", 50, seed=5, now=NOW, filler=1)
    generate(tmp_path / "bu", 50, seed=5, now=NOW, filler=1, fmt="bundles")
    bundle = orjson.loads(next((tmp_path / "bu").glob("wl-*.json")).read_bytes())
    assert bundle["entry"][0]["fullUrl"].startswith("urn:uuid:")
    assert any(e["resource"].get("subject", {}).get("reference", "").startswith("urn:uuid:")
               for e in bundle["entry"])
    a = run_local(tmp_path / "nd", now=NOW, settings=make_settings(), progress=False, evaluator=evaluator)
    b = run_local(tmp_path / "bu", now=NOW, settings=make_settings(), progress=False, evaluator=evaluator)
    assert a.rows and a.rows == b.rows


def test_urn_uuid_patient_and_medication_references() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient"}},
        {"fullUrl": "urn:uuid:m1", "resource": {"resourceType": "Medication", "id": "m1"}},
        {"fullUrl": "urn:uuid:c1", "resource": {"resourceType": "Condition", "id": "c1",
                                                "subject": {"reference": "urn:uuid:aaaa"}}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr1", "subject": {"reference": "urn:uuid:aaaa"},
                      "medicationReference": {"reference": "urn:uuid:m1"}}},
        {"resource": {"resourceType": "Claim", "id": "x", "patient": {"reference": "urn:uuid:aaaa"}}},
    ]}
    records = [(pid, orjson.loads(line)) for pid, line in bundle_records(orjson.dumps(bundle))]
    assert {pid for pid, _ in records} == {"aaaa"}
    types = sorted(r["resourceType"] for _, r in records)
    assert types == ["Condition", "Medication", "MedicationRequest", "Patient"]
    mr = next(r for _, r in records if r["resourceType"] == "MedicationRequest")
    assert mr["medicationReference"]["reference"] == "Medication/m1"
    assert patient_of({"resourceType": "Observation", "subject": {"reference": "https://x.org/fhir/Patient/p9"}}) \
        == "p9"
    assert patient_of({"resourceType": "Consent", "patient": {"reference": "Patient/p8/_history/2"}}) == "p8"


def test_medication_reference_resolves_like_an_inline_code(tmp_path: Path, evaluator: RecordEvaluator) -> None:
    from app.samples import sample_bundle

    resources = [e["resource"] for e in sample_bundle("mbc-demo-01", now=NOW)["entry"]]
    inline = evaluator.evaluate(resources, "mbc-demo-01", NOW, hook_instance=HOOK_INSTANCE)
    meds, lines = [], []
    for i, r in enumerate(resources):
        r = dict(r)
        if r["resourceType"] == "MedicationRequest":
            meds.append({"resourceType": "Medication", "id": f"m{i}", "code": r.pop("medicationCodeableConcept")})
            r["medicationReference"] = {"reference": f"Medication/m{i}"}
        lines.append(r)
    assert meds
    (tmp_path / "Patient.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines
                                                       if r["resourceType"] == "Patient"))
    (tmp_path / "mixed.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines
                                                     if r["resourceType"] != "Patient"))
    (tmp_path / "Medication.ndjson").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in meds))
    groups = list(PopulationReader(tmp_path))
    assert [g.patient_id for g in groups] == ["mbc-demo-01"]
    rows = run_local(tmp_path, now=NOW, settings=make_settings(), progress=False, evaluator=evaluator).rows
    assert set(rows[0]["rules"]) == {f.rule.id for f in inline.fired}
    assert "opioid-laxative" in rows[0]["rules"]  # only fires when the referenced Medication (tramadol) is read


def test_cli_writes_csv_ndjson_fhir_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    generate(tmp_path / "pop", 40, seed=2, now=NOW, filler=1)
    out = tmp_path / "out" / "worklist"
    code = cli_main(["worklist", str(tmp_path / "pop"), "--out", str(out), "--format", "both",
                     "--now", NOW.isoformat(), "--no-progress", "--fhir-out", str(tmp_path / "fhir.ndjson")])
    assert code == 0
    printed = capsys.readouterr().out
    for heading in ("tier", "phase", "site", "rule", "patients with cards"):
        assert heading in printed
    with open(out.with_suffix(".csv"), newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert table and list(table[0].keys()) == list(COLUMNS)
    nd = [orjson.loads(line) for line in out.with_suffix(".ndjson").read_bytes().splitlines()]
    assert [list(r.keys()) for r in nd] == [list(COLUMNS)] * len(table)
    assert [r["patient_id"] for r in nd] == [r["patient_id"] for r in table]
    assert table[0]["rank"] == "1" and isinstance(nd[0]["rules"], list)
    assert table[0]["rules"] == ";".join(nd[0]["rules"])
    fhir = [orjson.loads(line) for line in (tmp_path / "fhir.ndjson").read_bytes().splitlines()]
    worklist, drafts = fhir[0], fhir[1:]
    get_fhir_model_class("List").model_validate(worklist)
    assert [e["item"]["reference"] for e in worklist["entry"]] == [f"Patient/{r['patient_id']}" for r in nd]
    assert drafts and len({d["id"] for d in drafts}) == len(drafts)
    on_list = {r["patient_id"] for r in nd}
    for d in drafts:
        get_fhir_model_class("ServiceRequest").model_validate(d)
        assert d["status"] == "draft" and d["intent"] == "proposal"
        assert d["subject"]["reference"].removeprefix("Patient/") in on_list


def test_cli_rejects_a_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["worklist", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_generator_is_deterministic(tmp_path: Path) -> None:
    generate(tmp_path / "a", 30, seed=9, now=NOW, filler=1)
    generate(tmp_path / "b", 30, seed=9, now=NOW, filler=1)
    for file in sorted((tmp_path / "a").glob("*.ndjson")):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_progress_counter_without_tqdm() -> None:
    from app.worklist.output import Progress

    stream = io.StringIO()
    bar = Progress(3, stream=stream)
    bar.bar = None  # the in-place counter, whether or not tqdm is installed
    for _ in range(3):
        bar.update()
    bar.close()
    assert "3/3 patients" in stream.getvalue() and stream.getvalue().endswith("\n")
