"""The order hooks for integrators: `mbc-cds hook --hook order-sign --draft FILE`, `mbc-cds evaluate --draft`,
the sample draft orders and the viewer's order-sign demo route."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient

from app.cli import main
from app.samples import draft_orders, list_drafts, sample_bundle
from cds_hooks.draft_orders import parse_draft_orders
from tests.order_cases import MORPHINE, med_draft

FHIR = "http://fhir.example.org/baseR4"
SIGN = "http://cds.example.org/cds-services/mbc-order-sign"
SELECT = "http://cds.example.org/cds-services/mbc-order-select"


@pytest.fixture
def draft_file(tmp_path: Path) -> Path:
    path = tmp_path / "draft.json"
    path.write_bytes(orjson.dumps(med_draft("request-123", *MORPHINE)))
    return path


@respx.mock(assert_all_mocked=True)
def test_hook_command_sends_order_sign_with_the_draft_bundle(respx_mock: respx.MockRouter, draft_file: Path) -> None:
    route = respx_mock.post(SIGN).mock(return_value=httpx.Response(200, json={"cards": []}))
    assert main(["hook", "--service", SIGN, "--fhir-server", FHIR, "--patient", "p-1", "--hook", "order-sign",
                 "--draft", str(draft_file)]) == 0
    body = orjson.loads(route.calls.last.request.content)
    assert body["hook"] == "order-sign" and "selections" not in body["context"]
    entry = body["context"]["draftOrders"]["entry"]
    assert body["context"]["draftOrders"]["resourceType"] == "Bundle" and entry[0]["resource"]["id"] == "request-123"


@respx.mock(assert_all_mocked=True)
def test_hook_command_order_select_selects_the_drafts(respx_mock: respx.MockRouter, draft_file: Path) -> None:
    route = respx_mock.post(SELECT).mock(return_value=httpx.Response(200, json={"cards": []}))
    assert main(["hook", "--service", SELECT, "--fhir-server", FHIR, "--patient", "p-1", "--hook", "order-select",
                 "--draft", str(draft_file)]) == 0
    body = orjson.loads(route.calls.last.request.content)
    assert body["context"]["selections"] == ["MedicationRequest/request-123"]


def test_hook_command_order_hook_needs_a_draft(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hook", "--service", SIGN, "--fhir-server", FHIR, "--patient", "p-1", "--hook", "order-sign"]) == 1
    assert "--draft" in capsys.readouterr().err


def test_evaluate_with_a_draft_gives_the_order_sign_cards(tmp_path: Path, draft_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "patient.json"
    bundle.write_bytes(orjson.dumps(sample_bundle("mbc-demo-02")))
    draft = orjson.loads(draft_file.read_bytes())
    draft["subject"] = {"reference": "Patient/mbc-demo-02"}
    draft_file.write_bytes(orjson.dumps(draft))
    assert main(["evaluate", str(bundle), "--now", "2026-11-20T10:00:00Z", "--draft", str(draft_file)]) == 0
    cards = orjson.loads(capsys.readouterr().out)["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["order-opioid-laxative"]


def test_sample_drafts_are_valid_draft_orders() -> None:
    for item in list_drafts():
        drafts = parse_draft_orders(draft_orders(item["id"], "mbc-demo-01"))
        assert drafts.drafts and all(d.complete for d in drafts.drafts), item["id"]
        for d in drafts.drafts:
            assert d.resource["subject"]["reference"] == "Patient/mbc-demo-01"


def test_viewer_demo_fires_order_sign_with_a_sample_draft(client: TestClient) -> None:
    assert {d["id"] for d in client.get("/demo/drafts").json()["drafts"]} >= {"radiotherapy-20gy-5fx"}
    request = client.get("/demo/order-request/mbc-demo-02?draft=radiotherapy-20gy-5fx").json()
    assert request["hook"] == "order-sign"
    cards = client.post("/cds-services/mbc-order-sign", json=request).json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["order-radiotherapy-single-fraction"]
    assert client.get("/demo/order-request/mbc-demo-02?draft=nope").status_code == 404
    page = client.get("/viewer").text
    assert 'id="fire-order-sign"' in page
