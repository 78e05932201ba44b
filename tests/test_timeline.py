"""The patient timeline: JSON from PatientFacts, phase bands from determine_phase, the SVG, its endpoints."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.clinical.measures import calcium_series, latest_calcium
from app.clinical.phase import determine_phase
from app.clinical.timeline import build_timeline, facts_as_of
from app.main import create_app
from app.timeline_svg import render_timeline_svg
from tests.conftest import make_settings
from tests.test_clinical import ICD, NOW, PID, cond, day, facts, med, obs

SVG_NS = "{http://www.w3.org/2000/svg}"


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _encounter(eid: str, days_ago: int, klass: str = "EMER") -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "subject": {"reference": f"Patient/{PID}"},
            "class": {"code": klass}, "period": {"start": day(days_ago), "end": day(days_ago)}}


def _course() -> list[dict]:
    tramadol = med("tram", "10689", "Tramadol 50 MG Oral Capsule")
    tramadol["authoredOn"] = day(20)
    return [
        obs("pain-old", "72514-3", 100, 3), obs("pain-new", "72514-3", 5, 8),
        obs("ecog-old", "89247-1", 100, 1), obs("ecog-new", "89247-1", 5, 3),
        obs("ca", "17861-6", 3, 2.5, "mmol/L"), obs("alb", "1751-7", 3, 30, "g/L"),
        obs("w-old", "29463-7", 60, 70, "kg"), obs("w-new", "29463-7", 2, 64, "kg"),
        cond("brain", ICD, "C79.31", onset_days=10), _encounter("enc", 4), tramadol,
    ]


def test_series_sites_and_events_come_from_the_facts_with_their_resources() -> None:
    f = facts(*_course())
    tl = build_timeline(f)
    series = {s["key"]: s for s in tl["series"]}
    assert [(p["value"], p["ref"]) for p in series["pain-score"]["points"]] == [
        (3, "Observation/pain-old"), (8, "Observation/pain-new")]
    assert [p["value"] for p in series["ecog"]["points"]] == [1, 3]
    assert series["karnofsky"]["points"] == []
    # total calcium 2.5 with albumin 30 g/L: corrected 2.7 mmol/L, linked to both resources
    (ca,) = series["corrected-calcium"]["points"]
    assert ca["value"] == pytest.approx(2.7) and ca["corrected"] is True
    assert ca["refs"] == ["Observation/ca", "Observation/alb"]
    assert [p["value"] for p in series["body-weight"]["points"]] == [70, 64]

    sites = {s["key"]: s for s in tl["sites"]}
    assert sites["brain"]["ref"] == "Condition/brain" and sites["brain"]["first"][:10] == day(10)[:10]
    assert sites["bone"]["ref"] == "Condition/bone"
    kinds = {(e["kind"], e["ref"]) for e in tl["events"]}
    assert ("admission", "Encounter/enc") in kinds and ("treatment", "MedicationRequest/tram") in kinds
    assert all(_t(e["t"]) <= NOW for e in tl["events"])


def test_calcium_series_ends_with_the_value_the_rules_read() -> None:
    f = facts(obs("ca1", "17861-6", 40, 2.3, "mmol/L"), obs("ca", "17861-6", 3, 2.5, "mmol/L"),
              obs("alb", "1751-7", 3, 30, "g/L"))
    found = calcium_series(f)
    latest = latest_calcium(f)
    assert latest is not None and found[-1] == latest
    assert [c.corrected for c in found] == [False, True]


def test_phase_bands_are_contiguous_and_end_on_the_phase_the_cards_used() -> None:
    f = facts(*_course())
    tl = build_timeline(f)
    bands = tl["phases"]
    assert bands[0]["start"] == tl["start"] and bands[-1]["end"] == tl["end"]
    assert all(a["end"] == b["start"] and a["phase"] != b["phase"] for a, b in zip(bands, bands[1:], strict=False))
    assert bands[-1]["phase"] == determine_phase(f).name == "acute"
    # the bone metastasis 400 days ago opened an acute phase that closed after the 30-day window
    assert bands[0]["phase"] == "acute"
    assert abs(_t(bands[0]["end"]) - _t(bands[0]["start"]) - timedelta(days=30)) < timedelta(minutes=1)
    # assessed 100 days ago: stable from then until the new brain metastasis 10 days ago
    stable = [b for b in bands if b["phase"] == "stable"]
    assert stable and stable[-1]["end"][:10] == day(10)[:10]


def test_an_acute_signal_leaves_the_band_when_its_window_passes() -> None:
    f = facts(obs("p1", "72514-3", 60, 8), obs("p2", "72514-3", 10, 2))
    bands = build_timeline(f)["phases"]
    acute = [b for b in bands if b["phase"] == "acute" and b["start"][:10] == day(60)[:10]]
    assert len(acute) == 1 and acute[0]["end"][:10] == day(30)[:10]
    assert bands[-1]["phase"] == determine_phase(f).name == "stable"


def test_facts_as_of_leaves_out_later_findings() -> None:
    f = facts(*_course())
    past = facts_as_of(f, NOW - timedelta(days=50))
    assert "brain" not in past.sites and "bone" in past.sites
    assert [m.ref for m in past.series("pain-score")] == ["Observation/pain-old"]
    assert past.unplanned_encounters == [] and past.now == NOW - timedelta(days=50)


def test_svg_is_well_formed_escaped_and_links_every_marker() -> None:
    tl = build_timeline(facts(*_course()))
    tl["events"].append({"kind": "treatment", "t": day(1), "ref": "MedicationRequest/x",
                         "label": "<script>alert(1)</script> & co"})
    svg = render_timeline_svg(tl, link_base="https://fhir.example/r4/")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)
    links = root.findall(f".//{SVG_NS}a")
    assert links and all(a.get("href", "").startswith("https://fhir.example/r4/") for a in links)
    assert all(a.get("data-ref") and a.find(f"{SVG_NS}title") is not None for a in links)
    series = {g.get("data-series") for g in root.iter(f"{SVG_NS}g") if g.get("class") == "tl-series"}
    assert series == {"pain-score", "ecog", "corrected-calcium", "body-weight"}
    phases = {g.get("data-phase") for g in root.iter(f"{SVG_NS}g") if g.get("class") == "tl-phase"}
    assert "acute" in phases
    assert " style=" not in svg, "inline style would be blocked by the viewer's CSP"


def test_timeline_endpoints_answer_in_demo_mode_only(client: TestClient, tmp_path: Path) -> None:
    req = client.get("/demo/request/mbc-demo-03").json()
    r = client.post("/demo/timeline", json=req)
    assert r.status_code == 200
    tl = r.json()
    assert tl["patientId"] == "mbc-demo-03" and {s["key"] for s in tl["series"]} >= {"pain-score", "ecog"}
    assert any(s["key"] == "spine" for s in tl["sites"])
    svg = client.post("/demo/timeline.svg", json=req)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.text).tag == f"{SVG_NS}svg"
    assert client.post("/demo/timeline", json={**req, "prefetch": {}}).status_code == 412
    assert client.post("/demo/timeline", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/demo/timeline", content=b"{").status_code == 415  # no simple cross-site POSTs (issue 16)
    assert client.get("/favicon.ico").status_code == 200
    with TestClient(create_app(make_settings(tmp_path, require_jwt=True, public_base_url="http://testserver",
                                             allowed_fhir_servers="*"))) as jwt_on:
        r = jwt_on.post("/demo/timeline", json=req)
        assert r.status_code == 404 and r.json()["error"] == "demo-mode-off"


def test_procedures_on_record_are_treatment_events() -> None:
    from app.clinical.facts import Dated

    f = facts(*_course())
    f.treatments["radiotherapy-bone"] = [Dated("Procedure/rt", NOW - timedelta(days=7))]
    events = [e for e in build_timeline(f)["events"] if e["ref"] == "Procedure/rt"]
    assert events == [{"kind": "treatment", "t": (NOW - timedelta(days=7)).isoformat().replace("+00:00", "Z"),
                       "ref": "Procedure/rt", "label": "palliative radiotherapy to bone"}]
