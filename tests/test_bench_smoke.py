"""The benchmark's building blocks work (bench/): no timing assertions, only that they run and answer."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import SERVICE_URL, make_settings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import patients  # noqa: E402
from bench.run import linear_fit, percentile, summarize  # noqa: E402


@pytest.fixture(scope="module")
def bench_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # The benchmark's patients are dated around the real now, so the service keeps its real clock here.
    app = create_app(make_settings(tmp_path_factory.mktemp("bench")))
    with TestClient(app) as c:
        yield c


def _rule_ids(response_json: dict) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response_json["cards"]]


def test_typical_patient_has_about_40_resources_of_the_expected_kinds() -> None:
    resources = patients.typical_patient()
    assert 35 <= len(resources) <= 45
    kinds = {r["resourceType"] for r in resources}
    assert {"Patient", "Condition", "Observation", "MedicationRequest", "ServiceRequest", "Encounter"} <= kinds
    assert len({(r["resourceType"], r["id"]) for r in resources}) == len(resources), "ids are unique"
    assert sum(r["resourceType"] == "MedicationRequest" for r in resources) in (4, 5)


def test_sized_patient_has_exactly_the_requested_size() -> None:
    for size in (100, 1000):
        request = patients.hook_request(patients.sized_patient(size), "p")
        assert patients.prefetch_count(request) == size


def test_heavy_patient_adds_vital_signs_with_blood_pressure_components() -> None:
    vitals = patients.vital_signs("p", 10)
    codes = {v["code"]["coding"][0]["code"] for v in vitals}
    assert {"8867-4", "85354-9", "8310-5"} <= codes
    bp = next(v for v in vitals if v["code"]["coding"][0]["code"] == "85354-9")
    assert len(bp["component"]) == 2
    assert len(patients.heavy_patient(vitals=50)) == len(patients.typical_patient()) + 50


@pytest.mark.parametrize("case", patients.cases(quick=True), ids=lambda c: c["name"])
def test_service_answers_every_benchmark_case(bench_client: TestClient, case: dict) -> None:
    r = bench_client.post(case.get("path", SERVICE_URL), content=orjson.dumps(case["request"]),
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:500]
    if case["request"]["hook"] == "patient-view":
        assert "mbc-overview" in _rule_ids(r.json())
    else:  # order hooks: the draft is judged (the typical patient has a laxative on record: no laxative card)
        assert isinstance(r.json()["cards"], list)
    for variant in case.get("variants", [])[:3]:
        assert bench_client.post(case["path"], content=orjson.dumps(variant),
                                 headers={"Content-Type": "application/json"}).status_code == 200


def test_floor_app_answers_one_card_in_the_same_shape() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import floor_app
    finally:
        sys.path.remove(str(ROOT / "bench"))
    body = orjson.dumps(patients.cases(quick=True)[0]["request"])
    with TestClient(floor_app.app) as c:
        r = c.post(SERVICE_URL, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200
        cards = r.json()["cards"]
        assert len(cards) == 1
        assert {"uuid", "summary", "detail", "indicator", "source"} <= set(cards[0])
        assert c.post(SERVICE_URL, content=b"[1]").status_code == 400


def test_statistics_helpers() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    s = summarize([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["p50"] == 2.0
    fit = linear_fit([100, 1000, 5000], [2.0, 11.0, 51.0])
    assert abs(fit["slope_ms_per_1000"] - 10.0) < 1e-6 and fit["r2"] > 0.999


def test_raw_load_client_and_sequential_client_against_a_local_floor(tmp_path: Path) -> None:
    """The load generators talk HTTP/1.1 correctly to a real uvicorn (the floor app, 1 worker)."""
    from bench.run import Server, throughput

    body = orjson.dumps(patients.cases(quick=True)[0]["request"])
    server = Server("floor", 1, tmp_path)
    server.start("smoke")
    try:
        assert server.wait_first_hook(body, timeout=60) > 0
        for client in ("raw", "httpx"):
            tp = throughput(server.url, body, 4, 0.5, 0.1, client)
            assert tp["ok"] > 0 and tp["errors"] == 0, tp
        assert server.rss_kb()["peak_sum_kb"] > 0
    finally:
        server.stop()
    assert server.proc is None


def test_order_hooks_inprocess_bench_runs_and_reuses_the_evaluation(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.order_hooks_inprocess import main

    assert main(["-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "order-select" in out and "order-sign" in out and "hits" in out
