"""The HTTP contract: discovery, the hook end to end (prefetch and FHIR server), errors, feedback, knowledge."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import respx
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_hooks.models import Card
from tests.conftest import SERVICE_URL, hook_request

PID = "pat-bone"
FHIR = "https://ehr.example.org/fhir"


def bone_patient() -> list[dict]:
    return [
        {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Condition", "id": "c-breast", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                            "code": "confirmed"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009",
                              "display": "Malignant neoplasm of breast"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c-bone", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51",
                              "display": "Secondary malignant neoplasm of bone"}]},
         "onsetDateTime": "2026-05-10"},
    ]


def _rules(resp: httpx.Response | object) -> list[str]:
    return [c["source"]["topic"]["code"] for c in resp.json()["cards"]]  # type: ignore[attr-defined]


def test_discovery_lists_the_service(client: TestClient) -> None:
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    services = resp.json()["services"]
    svc = next(s for s in services if s["id"] == "mbc-palliative-care")
    assert svc["hook"] == "patient-view"
    templates = " ".join(svc["prefetch"].values())
    for rtype in ("Patient/", "Condition?", "Observation?", "MedicationRequest?", "ServiceRequest?"):
        assert rtype in templates
    assert "{{context.patientId}}" in svc["prefetch"]["conditions"]


def test_bone_metastasis_gets_overview_and_palliative_referral(client: TestClient) -> None:
    resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID))
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    rules = _rules(resp)
    assert rules[0] == "mbc-overview" or "mbc-overview" in rules
    assert "referral-palliative-care" in rules
    card = next(c for c in cards if c["source"]["topic"]["code"] == "referral-palliative-care")
    Card.model_validate(card)
    assert card["selectionBehavior"] in ("at-most-one", "any")
    resource = card["suggestions"][0]["actions"][0]["resource"]
    sr = ServiceRequest.model_validate(resource)
    assert sr.status == "draft" and sr.intent == "proposal"
    assert resource["subject"] == {"reference": f"Patient/{PID}"}
    assert {"reference": "Condition/c-bone"} in resource["reasonReference"]
    for c in cards:
        assert len(c["summary"]) < 140
        assert c["source"]["topic"]["system"].startswith("http")


def _bundle(resources: list[dict], next_url: str | None = None) -> dict:
    b: dict = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


@respx.mock(assert_all_mocked=True)
def test_same_cards_from_a_paged_fhir_server(client: TestClient, respx_mock: respx.MockRouter) -> None:
    res = bone_patient()
    seen_auth: list[str] = []

    def conditions(request: httpx.Request) -> httpx.Response:
        seen_auth.append(request.headers.get("authorization", ""))
        if "page=2" in str(request.url):
            return httpx.Response(200, json=_bundle([res[2]]))
        return httpx.Response(200, json=_bundle([res[1]], f"{FHIR}/Condition?patient={PID}&page=2"))

    respx_mock.get(url__startswith=f"{FHIR}/Patient/{PID}").mock(return_value=httpx.Response(200, json=res[0]))
    respx_mock.get(url__startswith=f"{FHIR}/Condition").mock(side_effect=conditions)
    respx_mock.get(url__regex=rf"{FHIR}/(?!Patient|Condition).*").mock(return_value=httpx.Response(
        200, json=_bundle([])))
    body = {"hook": "patient-view", "hookInstance": "b5b8a6a4-1111-4c1e-9a42-1f0d0e3c4a11",
            "fhirServer": FHIR, "fhirAuthorization": {"access_token": "secret-token", "token_type": "Bearer",
                                                      "expires_in": 300, "scope": "patient/*.read",
                                                      "subject": "cds-service"},
            "context": {"patientId": PID, "userId": "Practitioner/1"}}
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200, resp.text
    with_prefetch = client.post(SERVICE_URL, json=hook_request(res, PID))
    assert _rules(resp) == _rules(with_prefetch)
    assert seen_auth and all(a == "Bearer secret-token" for a in seen_auth)
    assert len(seen_auth) == 2  # both pages were read


@respx.mock
def test_fhir_server_failure_gives_data_incomplete_not_500(client: TestClient, respx_mock: respx.MockRouter) -> None:
    failure = httpx.Response(500, json={"resourceType": "OperationOutcome"})
    respx_mock.get(url__startswith=FHIR).mock(return_value=failure)
    body = {"hook": "patient-view", "hookInstance": "x-1", "fhirServer": FHIR,
            "context": {"patientId": PID}}
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200
    assert _rules(resp) == ["data-incomplete"]


def test_errors_have_the_contract_statuses(client: TestClient) -> None:
    ok = hook_request(bone_patient(), PID)
    assert client.post(SERVICE_URL, content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 400
    assert client.post(SERVICE_URL, content=b"[]", headers={"content-type": "application/json"}).status_code == 400
    wrong = dict(ok, hook="order-select")
    assert client.post(SERVICE_URL, json=wrong).status_code == 400
    no_patient = dict(ok, context={"userId": "Practitioner/1"})
    r = client.post(SERVICE_URL, json=no_patient)
    assert r.status_code == 400 and r.json()["error"]
    assert client.post("/cds-services/nope", json=ok).status_code == 404
    nodata = {"hook": "patient-view", "hookInstance": "i-1", "context": {"patientId": PID}}
    r = client.post(SERVICE_URL, json=nodata)
    assert r.status_code == 412 and r.json()["error"] == "no-data"
    big = b'{"hook": "patient-view", "pad": "' + b"x" * (21 * 1024 * 1024) + b'"}'
    assert client.post(SERVICE_URL, content=big, headers={"content-type": "application/json"}).status_code == 413
    for resp in (client.post(SERVICE_URL, json=wrong), client.post("/cds-services/nope", json=ok)):
        assert resp.headers["content-type"].startswith("application/json")


def test_no_breast_cancer_means_no_cards(client: TestClient) -> None:
    res = [r for r in bone_patient() if r["id"] != "c-breast"]
    resp = client.post(SERVICE_URL, json=hook_request(res, PID))
    assert resp.status_code == 200
    assert resp.json() == {"cards": []}


def test_null_prefetch_means_no_data_and_no_fetch(client: TestClient) -> None:
    body = hook_request(bone_patient(), PID)
    body["prefetch"]["observations"] = None
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200
    assert "data-incomplete" not in _rules(resp)


def test_operation_outcome_prefetch_is_reported(client: TestClient) -> None:
    body = hook_request(bone_patient(), PID)
    body["prefetch"]["medicationRequests"] = {"resourceType": "OperationOutcome",
                                              "issue": [{"severity": "error", "code": "exception"}]}
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200
    assert "data-incomplete" in _rules(resp)


def test_feedback_is_stored_idempotently_and_reported(client: TestClient) -> None:
    resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID))
    card = next(c for c in resp.json()["cards"] if c["source"]["topic"]["code"] == "referral-palliative-care")
    assert client.app.state.runtime.audit.wait_idle()  # type: ignore[attr-defined]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                        "outcomeTimestamp": "2026-11-20T10:05:00Z"}]}
    first = client.post(f"{SERVICE_URL}/feedback", json=fb)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 1
    again = client.post(f"{SERVICE_URL}/feedback", json=fb)
    assert again.status_code == 200 and again.json()["stored"] == 0
    report = client.get(f"{SERVICE_URL}/feedback/report").json()["rules"]
    row = next(r for r in report if r["rule"] == "referral-palliative-care")
    assert row["accepted"] == 1


def test_bad_feedback_is_400_and_writes_nothing(client: TestClient) -> None:
    bad = {"feedback": [{"card": "a", "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}],
                         "outcomeTimestamp": "2026-11-20T10:05:00Z"},
                        {"card": "b", "outcome": "accepted", "outcomeTimestamp": "2026-11-20T10:05:00Z"}]}
    assert client.post(f"{SERVICE_URL}/feedback", json=bad).status_code == 400
    report = client.get(f"{SERVICE_URL}/feedback/report").json()["rules"]
    assert report == []
    assert client.post("/cds-services/nope/feedback", json=bad).status_code == 404


def test_knowledge_endpoints(client: TestClient) -> None:
    bundle = client.get("/fhir/PlanDefinition").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] >= 5
    pd_id = bundle["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/PlanDefinition/{pd_id}").json()["id"] == pd_id
    assert client.get("/fhir/ValueSet/breast-primary").json()["resourceType"] == "ValueSet"
    assert client.get("/fhir/PlanDefinition/nope").status_code == 404
    assert client.get("/fhir/Patient").status_code == 404


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"


def test_cors_preflight_for_a_configured_origin(tmp_path: Path) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, cors_origins="https://sandbox.cds-hooks.org"))
    with TestClient(app) as c:
        resp = c.options(SERVICE_URL, headers={"Origin": "https://sandbox.cds-hooks.org",
                                               "Access-Control-Request-Method": "POST"})
    assert resp.status_code == 200
    assert resp.headers.get("access-control-allow-origin") == "https://sandbox.cds-hooks.org"


def test_response_has_no_empty_optional_fields(client: TestClient) -> None:
    raw = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID)).content
    assert b":null" not in raw and b':""' not in raw and b":[]" not in raw.replace(b'"cards":[]', b"")
    assert b":{}" not in raw
    orjson.loads(raw)


def test_fhir_server_allow_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, allowed_fhir_servers="https://ehr.example.org/fhir, https://other.example")
    assert settings.fhir_server_allowed("https://ehr.example.org/fhir")
    assert settings.fhir_server_allowed("https://ehr.example.org/fhir/")
    assert not settings.fhir_server_allowed("https://ehr.example.org/fhir-evil")
    assert not settings.fhir_server_allowed("http://169.254.169.254/latest")
    app = create_app(settings)
    with TestClient(app) as c:
        body = {"hook": "patient-view", "hookInstance": "i-1", "fhirServer": "http://169.254.169.254/latest",
                "context": {"patientId": PID}}
        resp = c.post(SERVICE_URL, json=body)
        assert resp.status_code == 400 and resp.json()["error"] == "fhir-server-not-allowed"


def _override(client: TestClient, card: dict, code: str) -> httpx.Response:
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:05:00Z",
                        "overrideReason": {"reason": {"system": "http://mbc-cds.example.org/fhir/CodeSystem/"
                                                                "mbc-cds-override-reason",
                                                      "code": code, "display": code}}}]}
    return client.post(f"{SERVICE_URL}/feedback", json=fb)


def test_patient_declined_snoozes_the_rule_on_the_next_hook_and_the_overview_says_so(client: TestClient) -> None:
    from tests.conftest import NOW

    client.app.state.runtime.clock = lambda: NOW  # type: ignore[attr-defined]
    first = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID)).json()["cards"]
    card = next(c for c in first if c["source"]["topic"]["code"] == "referral-palliative-care")
    # no wait for the audit writer: the feedback route finds a card still queued
    resp = _override(client, card, "patient-declined")
    assert resp.status_code == 200, resp.text
    assert resp.json()["snoozed"] == [{"rule": "referral-palliative-care", "reason": "patient-declined",
                                       "until": "2027-05-19T10:00:00Z"}]
    again = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID, hookInstance="second-hook")).json()
    rules = [c["source"]["topic"]["code"] for c in again["cards"]]
    assert "referral-palliative-care" not in rules
    overview = next(c for c in again["cards"] if c["source"]["topic"]["code"] == "mbc-overview")
    assert "Snoozed by clinician feedback" in overview["detail"]
    assert "snoozed until 2027-05-19 (patient declined)" in overview["detail"]
    # another patient is not affected
    other = [dict(r, id=r["id"] + "-b") if r["resourceType"] == "Patient" else
             dict(r, subject={"reference": f"Patient/{PID}-b"}) for r in bone_patient()]
    rules_b = [c["source"]["topic"]["code"] for c in
               client.post(SERVICE_URL, json=hook_request(other, f"{PID}-b")).json()["cards"]]
    assert "referral-palliative-care" in rules_b
    report = client.get(f"{SERVICE_URL}/feedback/report").json()
    assert report["snoozes"] == [{"rule": "referral-palliative-care", "reason": "patient-declined", "patients": 1,
                                  "latestUntil": "2027-05-19T10:00:00Z"}]
    # after the snooze period the card comes back
    client.app.state.runtime.clock = lambda: NOW + timedelta(days=181)  # type: ignore[attr-defined]
    later = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID, hookInstance="third-hook")).json()
    assert "referral-palliative-care" in [c["source"]["topic"]["code"] for c in later["cards"]]


def test_a_critical_card_cannot_be_snoozed(client: TestClient) -> None:
    from tests.conftest import NOW

    client.app.state.runtime.clock = lambda: NOW  # type: ignore[attr-defined]
    cord = [*bone_patient(), {
        "resourceType": "Condition", "id": "c-scc", "subject": {"reference": f"Patient/{PID}"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "71286001",
                             "display": "Spinal cord compression"}]},
        "onsetDateTime": (NOW - timedelta(days=2)).date().isoformat()}]
    cards = client.post(SERVICE_URL, json=hook_request(cord, PID)).json()["cards"]
    card = next(c for c in cards if c["source"]["topic"]["code"] == "emergency-spinal-cord-compression")
    assert card["indicator"] == "critical"
    resp = _override(client, card, "patient-declined")
    assert resp.status_code == 200 and "snoozed" not in resp.json()
    assert resp.json()["notSnoozed"][0]["rule"] == "emergency-spinal-cord-compression"
    again = client.post(SERVICE_URL, json=hook_request(cord, PID, hookInstance="h2")).json()["cards"]
    assert "emergency-spinal-cord-compression" in [c["source"]["topic"]["code"] for c in again]


def test_feedback_for_a_card_never_issued_is_404_and_a_second_outcome_409(client: TestClient) -> None:
    never = _override(client, {"uuid": "00000000-0000-5000-8000-000000000000"}, "not-appropriate")
    assert never.status_code == 404 and never.json()["error"] == "unknown-card"
    cards = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID)).json()["cards"]
    card = next(c for c in cards if c["source"]["topic"]["code"] == "referral-palliative-care")
    assert _override(client, card, "not-appropriate").status_code == 200
    assert _override(client, card, "not-appropriate").json() == {"stored": 0, "alreadyStored": 1}
    second = _override(client, card, "already-addressed")
    assert second.status_code == 409 and second.json()["error"] == "outcome-already-recorded"
    report = client.get(f"{SERVICE_URL}/feedback/report").json()["rules"]
    assert report == [{"rule": "referral-palliative-care", "accepted": 0, "overridden": 1}]


def test_overriding_the_overview_snoozes_nothing(client: TestClient) -> None:
    cards = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID)).json()["cards"]
    overview = next(c for c in cards if c["source"]["topic"]["code"] == "mbc-overview")
    resp = _override(client, overview, "patient-declined")
    assert resp.status_code == 200 and "snoozed" not in resp.json()
    assert client.get(f"{SERVICE_URL}/feedback/report").json()["snoozes"] == []
