"""HAPI FHIR compatibility of the FHIR-server fallback and of the integrator commands.

1. Recorded HAPI-shaped responses (tests/hapi_recorded/, see its README) served with respx at the hook
   endpoint's `fhirServer`: `_getpages` paging, `meta`/`text` on resources, `application/fhir+json;charset=utf-8`,
   OperationOutcome errors (404 unknown patient, 401, 410 expired paging).
2. End to end against a real FHIR server process (tests/fhirserver, Medplum's in-memory FHIR router on node):
   `mbc-cds load` then `mbc-cds hook`, with and without prefetch, against the app served by uvicorn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient

from app.cli import evaluate_bundle, main
from app.samples import sample_bundle, sample_ids
from tests.conftest import SERVICE_URL, hook_request
from tests.served_app import serve_app
from tests.test_integrator import rules_of

try:  # the local FHIR server fixture (node + Medplum); absent on machines without it
    from tests.fhir_server_fixture import local_fhir_server  # noqa: F401
except ImportError:
    HAVE_FHIR_SERVER_FIXTURE = False
else:
    HAVE_FHIR_SERVER_FIXTURE = True

RECORDED = Path(__file__).parent / "hapi_recorded"
BASE = "http://hapi.example.org:8080/fhir"
PID = "592817"
HAPI_HEADERS = {"content-type": "application/fhir+json;charset=utf-8",
                "x-powered-by": "HAPI FHIR 7.4.0 REST Server (FHIR Server; FHIR 4.0.1/R4)"}
HOOK_INSTANCE = "3f1e9b2c-5d7a-4c8e-9b1f-2a6d4e8c0f13"


def recorded(name: str) -> dict[str, Any]:
    return orjson.loads((RECORDED / name).read_bytes())


def hapi_response(status: int, name: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=(RECORDED / name).read_bytes(), headers={**HAPI_HEADERS, **headers})


def hapi_server(seen: list[httpx.Request], *, expired_paging: bool = False,
                require_token: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """Answers as HAPI would for patient 592817 (anything else: HAPI-2001 404)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if require_token and request.headers.get("authorization") != f"Bearer {require_token}":
            return hapi_response(401, "unauthorized-401.json", **{"www-authenticate": 'Bearer realm="hapi"'})
        path = request.url.path.removeprefix("/fhir").strip("/")
        params = request.url.params
        if not path and "_getpages" in params:
            if expired_paging:
                return hapi_response(410, "search-expired-410.json")
            assert params["_getpagesoffset"] == "20" and params["_bundletype"] == "searchset"
            return hapi_response(200, "patient-592817-Observation-page2.json")
        if path == f"Patient/{PID}":
            return hapi_response(200, "patient-592817-read.json", etag='W/"1"',
                                 **{"last-modified": "Wed, 18 Nov 2026 14:02:11 GMT"})
        if "/" in path or params.get("patient") != PID:
            return hapi_response(404, "unknown-patient-404.json")
        name = {"Condition": "patient-592817-Condition.json",
                "Observation": "patient-592817-Observation-page1.json",
                "MedicationRequest": "patient-592817-MedicationRequest.json"}.get(path, "empty-searchset.json")
        return hapi_response(200, name)

    return handle


def all_recorded_resources() -> list[dict[str, Any]]:
    out = [recorded("patient-592817-read.json")]
    for name in ("patient-592817-Condition.json", "patient-592817-Observation-page1.json",
                 "patient-592817-Observation-page2.json", "patient-592817-MedicationRequest.json"):
        out.extend(e["resource"] for e in recorded(name).get("entry", []))
    return out


def hook_body(patient: str = PID, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "fhirServer": BASE,
                            "context": {"patientId": patient, "userId": "Practitioner/example"}}
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "mbc-cds"}
    return body


# ----------------------------------------------------------------------------------------------------------
# recorded HAPI responses at the hook endpoint
# ----------------------------------------------------------------------------------------------------------


@respx.mock(assert_all_mocked=True)
def test_hook_reads_every_hapi_page_and_gives_the_prefetch_cards(client: TestClient,
                                                                 respx_mock: respx.MockRouter) -> None:
    seen: list[httpx.Request] = []
    respx_mock.get(url__startswith=BASE).mock(side_effect=hapi_server(seen))
    resp = client.post(SERVICE_URL, json=hook_body())
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]

    urls = [str(r.url) for r in seen]
    getpages = [u for u in urls if "_getpages=" in u]
    assert getpages == [recorded("patient-592817-Observation-page1.json")["link"][1]["url"]]
    keys = client.get("/cds-services").json()["services"][0]["prefetch"]
    assert len(seen) == len(keys) + 1  # one read or search per discovery key, plus the second Observation page
    assert all(r.headers["accept"] == "application/fhir+json" for r in seen)

    # the same patient sent as prefetch (every resource of every page) gives the same cards
    prefetched = client.post(SERVICE_URL, json=hook_request(all_recorded_resources(), PID,
                                                            hookInstance=HOOK_INSTANCE))
    assert prefetched.status_code == 200
    assert cards == prefetched.json()["cards"]

    rules = rules_of(cards)
    assert "mbc-overview" in rules and "data-incomplete" not in rules
    assert {"liver-metastases", "bone-modifying-agent"} <= set(rules)
    # the latest pain score (7/10) is only on HAPI's second page
    assert any("7/10" in c["summary"] + c.get("detail", "") for c in cards)
    overview = next(c for c in cards if c["source"]["topic"]["code"] == "mbc-overview")
    assert "Condition/592820" in overview["detail"]  # server-assigned numeric ids survive as references


@respx.mock(assert_all_mocked=True)
def test_expired_hapi_paging_link_keeps_the_first_page(client: TestClient, respx_mock: respx.MockRouter) -> None:
    seen: list[httpx.Request] = []
    respx_mock.get(url__startswith=BASE).mock(side_effect=hapi_server(seen, expired_paging=True))
    resp = client.post(SERVICE_URL, json=hook_body())
    assert resp.status_code == 200
    rules = rules_of(resp.json()["cards"])
    assert "mbc-overview" in rules and "bone-modifying-agent" in rules
    assert any("_getpages=" in str(r.url) for r in seen)


@respx.mock(assert_all_mocked=True)
def test_expired_hapi_paging_link_says_what_is_missing(client: TestClient, respx_mock: respx.MockRouter) -> None:
    respx_mock.get(url__startswith=BASE).mock(side_effect=hapi_server([], expired_paging=True))
    cards = client.post(SERVICE_URL, json=hook_body()).json()["cards"]
    incomplete = [c for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
    assert incomplete and "Observation" in incomplete[0]["summary"] and "410" in incomplete[0]["summary"]


@respx.mock(assert_all_mocked=True)
def test_unknown_patient_on_hapi_says_what_could_not_be_read(client: TestClient, respx_mock: respx.MockRouter) -> None:
    seen: list[httpx.Request] = []
    respx_mock.get(url__startswith=BASE).mock(side_effect=hapi_server(seen))
    resp = client.post(SERVICE_URL, json=hook_body("99999999"))
    assert resp.status_code == 200, resp.text
    assert all(r.url.path.endswith("Patient/99999999") or r.url.params.get("patient") == "99999999" for r in seen)
    # nothing readable: not silence (that would read as "nothing to do") but one card saying what could not be read
    cards = resp.json()["cards"]
    assert rules_of(cards) == ["data-incomplete"]
    assert "Patient" in cards[0]["summary"] and "404" in cards[0]["summary"]


@respx.mock(assert_all_mocked=True)
def test_hapi_401_operation_outcome_is_reported_and_the_token_is_sent(client: TestClient,
                                                                      respx_mock: respx.MockRouter) -> None:
    seen: list[httpx.Request] = []
    respx_mock.get(url__startswith=BASE).mock(side_effect=hapi_server(seen, require_token="good"))
    resp = client.post(SERVICE_URL, json=hook_body(token="bad"))
    assert resp.status_code == 200
    cards = resp.json()["cards"]
    assert rules_of(cards) == ["data-incomplete"]
    assert "401" in cards[0]["detail"]
    assert {r.headers["authorization"] for r in seen} == {"Bearer bad"}

    seen.clear()
    ok = client.post(SERVICE_URL, json=hook_body(token="good"))
    assert "mbc-overview" in rules_of(ok.json()["cards"])
    assert {r.headers["authorization"] for r in seen} == {"Bearer good"}


# ----------------------------------------------------------------------------------------------------------
# `mbc-cds hook --prefetch` reading HAPI pages itself, against the app under uvicorn
# ----------------------------------------------------------------------------------------------------------


def test_cli_hook_with_and_without_prefetch_against_hapi_recordings(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[httpx.Request] = []
    with serve_app(tmp_path, require_jwt=False) as (base, _db), respx.mock(assert_all_mocked=True) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.get(url__startswith=BASE).mock(side_effect=hapi_server(seen))
        common = ["hook", "--service", f"{base}/cds-services/mbc-palliative-care", "--fhir-server", BASE,
                  "--patient", PID, "--json"]
        assert main(common) == 0
        server_read = rules_of(json.loads(capsys.readouterr().out)["cards"])
        n_server = len(seen)
        assert main([*common, "--prefetch"]) == 0
        prefetched = rules_of(json.loads(capsys.readouterr().out)["cards"])
        n_both = len(seen)
        assert main(common[:-1]) == 0  # the readable table
        table = capsys.readouterr().out
    assert server_read == prefetched and "mbc-overview" in server_read
    assert n_both == 2 * n_server  # --prefetch: the CLI read the same URLs, pages included
    assert sum("_getpages=" in str(r.url) for r in seen[:n_both]) == 2
    assert "rule: mbc-overview" in table


# ----------------------------------------------------------------------------------------------------------
# end to end against a real FHIR server process
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def fhir_base(request: pytest.FixtureRequest) -> str:
    if not HAVE_FHIR_SERVER_FIXTURE:
        pytest.skip("no local FHIR server fixture (tests/fhir_server_fixture.py)")
    return str(request.getfixturevalue("local_fhir_server")).rstrip("/")


E2E_SAMPLES = ("mbc-demo-01", "mbc-demo-03", "mbc-demo-11")


def test_load_then_hook_against_a_local_fhir_server(fhir_base: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert set(E2E_SAMPLES) <= set(sample_ids())
    assert main(["load", "--fhir-server", fhir_base]) == 0
    out = capsys.readouterr().out
    assert f"[{len(sample_ids())}/{len(sample_ids())}]" in out and "failed" not in out

    got: dict[str, list[str]] = {}
    with serve_app(tmp_path, require_jwt=False) as (base, _db):
        service = f"{base}/cds-services/mbc-palliative-care"
        for sid in E2E_SAMPLES:
            now = datetime.now(UTC)
            expected = rules_of(evaluate_bundle(sample_bundle(sid, now=now), now=now))
            common = ["hook", "--service", service, "--fhir-server", fhir_base, "--patient", sid, "--json"]
            assert main(common) == 0, capsys.readouterr().err
            from_server = rules_of(json.loads(capsys.readouterr().out)["cards"])
            assert main([*common, "--prefetch"]) == 0, capsys.readouterr().err
            with_prefetch = rules_of(json.loads(capsys.readouterr().out)["cards"])
            assert sorted(from_server) == sorted(expected), sid
            assert sorted(with_prefetch) == sorted(expected), sid
            got[sid] = from_server
    assert "emergency-spinal-cord-compression" in got["mbc-demo-03"]
    assert {"mbc-overview", "referral-palliative-care"} <= set(got["mbc-demo-01"])
    assert got["mbc-demo-11"] == []  # no metastases: no cards
