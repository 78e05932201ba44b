"""FHIR-server faults: the hook answers 200 within its time budget with the cards the readable data supports
and one data-incomplete card naming what could not be read. Against a real slow local HTTP server
(tests/slow_server.py) and with respx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import NOW, SERVICE_URL, make_settings
from tests.slow_server import FaultyFhirServer, running_server

BUDGET = 1.5  # settings.fhir_timeout_seconds in these tests
SLACK = 1.0   # generous: a behaviour check, not a benchmark
PID = "pat-faults"
TOKEN = "fhir-access-token-faults"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
RESOURCES: dict[str, list[dict[str, Any]]] = {
    "Patient": [{"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"}],
    "Condition": [
        {"resourceType": "Condition", "id": "c-breast", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c-bone", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": ACTIVE,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
    ],
    "Observation": [
        {"resourceType": "Observation", "id": "o-pain", "status": "final", "subject": {"reference": f"Patient/{PID}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
         "effectiveDateTime": "2026-11-18", "valueQuantity": {"value": 8, "unit": "{score}"}},
    ],
}

# mode -> words the data-incomplete card uses for it
EXPECTED_TEXT = {
    "trickle": "did not answer in time",
    "hang": "did not answer in time",
    "slow-headers": "did not answer in time",
    "401": "refused the access token (HTTP 401)",
    "403": "refused access (HTTP 403)",
    "404": "did not find it (HTTP 404)",
    "500": "answered with an error (HTTP 500)",
    "malformed": "not valid FHIR JSON",
    "paging-loop": "paging looped",
}


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyFhirServer]:
    with running_server() as srv:
        srv.resources = RESOURCES
        srv.trickle_interval = 0.05
        srv.slow_seconds = 10
        yield srv


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("faults"), fhir_timeout_seconds=BUDGET,
                             fhir_connect_timeout_seconds=0.5)
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        yield c


def body(fhir_server: str) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": "f0f0f0f0-1111-4c1e-9a42-1f0d0e3c4a11",
            "fhirServer": fhir_server,
            "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "mbc-cds"},
            "context": {"patientId": PID, "userId": "Practitioner/1"}}


def call(client: TestClient, fhir_server: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    resp = client.post(SERVICE_URL, json=body(fhir_server))
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    return resp.json(), elapsed


def rules(doc: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in doc["cards"]]


def incomplete_text(doc: dict[str, Any]) -> str:
    cards = [c for c in doc["cards"] if c["source"]["topic"]["code"] == "data-incomplete"]
    assert len(cards) == 1, rules(doc)
    return cards[0]["summary"] + "\n" + cards[0].get("detail", "")


# ------------------------------------------------------------------------------------ real slow server


def test_healthy_server_gives_cards_and_no_data_incomplete(client: TestClient, server: FaultyFhirServer) -> None:
    doc, elapsed = call(client, server.base("ok"))
    assert "mbc-overview" in rules(doc)
    assert "data-incomplete" not in rules(doc), [c["summary"] for c in doc["cards"]]
    assert elapsed < BUDGET + SLACK
    fhir_calls = [r for r in server.requests if r[1].startswith("/ok/")]
    assert fhir_calls and all(r[2].get("authorization") == f"Bearer {TOKEN}" for r in fhir_calls)


@pytest.mark.parametrize("mode", list(EXPECTED_TEXT))
def test_observation_fault_answers_in_time_with_the_rest(client: TestClient, server: FaultyFhirServer,
                                                         mode: str) -> None:
    doc, elapsed = call(client, server.base(mode))
    assert elapsed < BUDGET + SLACK, f"{mode}: {elapsed:.2f} s"
    assert "mbc-overview" in rules(doc)  # the Conditions were read: the overview stands
    text = incomplete_text(doc)
    assert "Observation" in text and EXPECTED_TEXT[mode] in text, text
    assert TOKEN not in str(doc)


def test_every_type_hanging_still_answers_in_time(client: TestClient, server: FaultyFhirServer) -> None:
    server.faulty_types = set(RESOURCES) | {"MedicationRequest", "ServiceRequest", "Encounter"}
    try:
        doc, elapsed = call(client, server.base("hang"))
    finally:
        server.faulty_types = {"Observation"}
    assert elapsed < BUDGET + SLACK
    # nothing in scope could be read: the only card says so
    assert rules(doc) == ["data-incomplete"]
    assert "Condition" in incomplete_text(doc)


def test_trickling_every_type_is_cut_by_the_overall_deadline(client: TestClient, server: FaultyFhirServer) -> None:
    """httpx's read timeout restarts with every byte: only the resolver's deadline stops a trickle."""
    server.faulty_types = {"Observation", "Condition", "Patient"}
    server.trickle_interval = 0.2  # well under the read timeout, so httpx alone would wait for minutes
    try:
        doc, elapsed = call(client, server.base("trickle"))
    finally:
        server.faulty_types = {"Observation"}
        server.trickle_interval = 0.05
    assert elapsed < BUDGET + SLACK
    assert "data-incomplete" in rules(doc)


def test_nothing_listening(client: TestClient) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doc, elapsed = call(client, f"http://127.0.0.1:{port}/fhir")
    assert elapsed < BUDGET + SLACK
    assert rules(doc) == ["data-incomplete"]


def test_many_concurrent_hooks_against_a_hanging_server(client: TestClient, server: FaultyFhirServer) -> None:
    """The deadline is per hook: parallel hooks do not queue behind each other's slow reads."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: call(client, server.base("hang")), range(8)))
    assert time.monotonic() - started < 2 * (BUDGET + SLACK)
    for doc, _elapsed in results:
        assert "data-incomplete" in rules(doc)


# ----------------------------------------------------------------------------------------------- respx

FHIR = "https://ehr.example.org/fhir"


def respx_routes(mock: respx.MockRouter, observation: Any) -> None:
    def search(rtype: str) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            bundle = {"resourceType": "Bundle", "type": "searchset",
                      "entry": [{"resource": r} for r in RESOURCES.get(rtype, [])]}
            return httpx.Response(200, json=bundle)
        return answer

    patient = httpx.Response(200, json=RESOURCES["Patient"][0])
    mock.get(url__startswith=f"{FHIR}/Patient/{PID}").mock(return_value=patient)
    mock.get(url__startswith=f"{FHIR}/Condition").mock(side_effect=search("Condition"))
    mock.get(url__startswith=f"{FHIR}/Observation").mock(side_effect=observation)
    mock.get(url__regex=rf"{FHIR}/(?!Patient|Condition|Observation).*").mock(side_effect=search("Other"))


async def _hang(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    return httpx.Response(200)


def _loop(request: httpx.Request) -> httpx.Response:
    nxt = f"{FHIR}/Observation?page=2" if "page=2" not in str(request.url) else f"{FHIR}/Observation?page=3"
    if "page=3" in str(request.url):
        nxt = f"{FHIR}/Observation?page=2"
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                     "link": [{"relation": "next", "url": nxt}], "entry": []})


RESPX_CASES: dict[str, tuple[Any, str]] = {
    "401": (httpx.Response(401, json={"resourceType": "OperationOutcome"}), "refused the access token"),
    "403": (httpx.Response(403), "refused access (HTTP 403)"),
    "404": (httpx.Response(404, text="not here"), "did not find it (HTTP 404)"),
    "502": (httpx.Response(502, text="<html>bad gateway</html>"), "HTTP 502"),
    "503": (httpx.Response(503, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "transient", "diagnostics": f"Patient {PID} busy"}]}), "HTTP 503"),
    "malformed-json": (httpx.Response(200, content=b"{not json", headers={"content-type": "application/fhir+json"}),
                       "not valid FHIR JSON"),
    "json-array": (httpx.Response(200, json=[1, 2]), "not valid FHIR JSON"),
    "html-200": (httpx.Response(200, text="<html>login</html>"), "not valid FHIR JSON"),
    "operation-outcome-200": (httpx.Response(200, json={"resourceType": "OperationOutcome", "issue": []}),
                              "reported an error"),
    "paging-loop": (_loop, "paging looped"),
    "read-timeout": (httpx.ReadTimeout("slow"), "did not answer in time"),
    "connect-timeout": (httpx.ConnectTimeout("slow"), "did not answer in time"),
    "connect-error": (httpx.ConnectError("refused"), "refused the connection"),
    "hang": (_hang, "did not answer in time"),
}


@pytest.mark.parametrize("case", list(RESPX_CASES))
def test_respx_fault_matrix(client: TestClient, case: str) -> None:
    effect, expected = RESPX_CASES[case]
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        if isinstance(effect, httpx.Response):
            respx_routes(mock, lambda request, r=effect: r)
        else:
            respx_routes(mock, effect)
        doc, elapsed = call(client, FHIR)
    assert elapsed < BUDGET + SLACK, f"{case}: {elapsed:.2f} s"
    assert "mbc-overview" in rules(doc)
    text = incomplete_text(doc)
    assert "Observation" in text and expected in text, text
    assert PID not in text  # server diagnostics (which may name the patient) are not copied onto the card
