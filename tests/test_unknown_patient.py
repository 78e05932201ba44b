"""A patient id the FHIR server does not know: HAPI FHIR answers the read with 404 (HAPI-2001) but every search
for that patient with an empty searchset. One "could not read" card, not silence (silence reads as "nothing to
do" for a record that was never seen). Found against a real HAPI (tests/test_hapi_compat.py); here without it."""

from __future__ import annotations

import httpx
import respx
from fastapi.testclient import TestClient

from tests.conftest import SERVICE_URL
from tests.test_integrator import rules_of

BASE = "http://hapi.example.org/fhir"
# HAPI FHIR 8.8.0's answers, as the test server gave them
NOT_KNOWN = {"resourceType": "OperationOutcome",
             "issue": [{"severity": "error", "code": "processing",
                        "diagnostics": "HAPI-2001: Resource Patient/p404 is not known"}]}
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0,
         "link": [{"relation": "self", "url": f"{BASE}/Condition?patient=p404"}]}


def body(patient: str) -> dict[str, object]:
    return {"hook": "patient-view", "hookInstance": "0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f", "fhirServer": BASE,
            "context": {"patientId": patient, "userId": "Practitioner/example"}}


@respx.mock(assert_all_mocked=True)
def test_a_patient_the_server_does_not_know_gives_one_could_not_read_card(client: TestClient,
                                                                         respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE}/Patient/p404").mock(return_value=httpx.Response(404, json=NOT_KNOWN))
    respx_mock.get(url__startswith=BASE).mock(return_value=httpx.Response(200, json=EMPTY))
    cards = client.post(SERVICE_URL, json=body("p404")).json()["cards"]
    assert rules_of(cards) == ["data-incomplete"]
    assert "Patient" in cards[0]["summary"] and "404" in cards[0]["summary"]
    assert "did not find it" in cards[0]["detail"]


@respx.mock(assert_all_mocked=True)
def test_a_known_patient_without_cancer_records_stays_silent(client: TestClient,
                                                            respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(
        200, json={"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}))
    respx_mock.get(url__startswith=BASE).mock(return_value=httpx.Response(200, json=EMPTY))
    assert client.post(SERVICE_URL, json=body("p1")).json()["cards"] == []
