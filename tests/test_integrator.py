"""Integrator tools: `mbc-cds load`, `mbc-cds hook` and the viewer's demo routes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from app.bundles import bundle_resources
from app.cli import main
from app.cli.evaluate import evaluate_bundle
from app.hook_requests import demo_request_for_bundle, prefetch_from_resources
from app.main import create_app
from app.samples import list_samples, sample_bundle
from tests.conftest import NOW, SERVICE_URL, make_settings
from tests.served_app import free_port, serve_app

FHIR = "http://fhir.example.org/baseR4"
SERVICE = "http://cds.example.org/cds-services/mbc-palliative-care"
DISCOVERY = "http://cds.example.org/cds-services"


def rules_of(cards: list[dict[str, Any]]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


# ----------------------------------------------------------------------------------------------------------
# Bundle -> prefetch
# ----------------------------------------------------------------------------------------------------------


def test_bundle_resources_gives_ids_and_rewrites_urn_uuid_references() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
         "resource": {"resourceType": "Condition",
                      "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Condition"}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/p-put"}},
         "request": {"method": "PUT", "url": "Observation/o-1"}},
    ]}
    res = bundle_resources(bundle)
    assert res[0]["id"] == "11111111-1111-4111-8111-111111111111"
    assert res[1]["subject"] == {"reference": "Patient/11111111-1111-4111-8111-111111111111"}
    assert res[2]["id"] == "o-1"
    assert "id" not in bundle["entry"][0]["resource"]  # input untouched
    templates = {"patient": "Patient/{{context.patientId}}", "conditions": "Condition?patient={{context.patientId}}",
                 "goals": "Goal?patient={{context.patientId}}"}
    prefetch = prefetch_from_resources(res, templates, res[0]["id"])
    assert prefetch["patient"]["resourceType"] == "Patient"
    assert prefetch["conditions"]["total"] == 1
    assert prefetch["goals"] == {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


# ----------------------------------------------------------------------------------------------------------
# demo routes
# ----------------------------------------------------------------------------------------------------------


def test_demo_routes_list_samples_and_build_complete_requests(client: TestClient) -> None:
    samples = client.get("/demo/samples").json()["samples"]
    assert len(samples) >= 8
    assert set(samples[0]) == {"id", "title", "description"}
    discovery_keys = set(client.get("/cds-services").json()["services"][0]["prefetch"])
    for sample in samples:
        req = client.get(f"/demo/request/{sample['id']}").json()
        assert req["hook"] == "patient-view" and req["context"]["patientId"]
        assert set(req["prefetch"]) == discovery_keys
        resp = client.post(SERVICE_URL, json=req)
        assert resp.status_code == 200, resp.text
        # the same cards as evaluating the sample directly, dates shifted to the app's clock
        expected = evaluate_bundle(sample_bundle(sample["id"], now=NOW), now=NOW)
        assert rules_of(resp.json()["cards"]) == rules_of(expected), sample["id"]
    assert client.get("/demo/request/no-such-patient").status_code == 404


def test_demo_routes_do_not_exist_with_jwt_on(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, require_jwt=True, public_base_url="http://testserver",
                                             allowed_fhir_servers="*"))) as c:
        for path in ("/demo/samples", "/demo/request/mbc-demo-01"):
            resp = c.get(path)
            assert resp.status_code == 404
            assert resp.json()["error"] == "demo-mode-off"
        page = c.get("/")  # the viewer itself is there and explains that it needs demo mode
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_viewer_and_static_files_are_served_with_a_strict_csp(client: TestClient) -> None:
    for path in ("/", "/viewer"):
        resp = client.get(path)
        assert resp.status_code == 200
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert '<script src="/static/viewer.js"' in resp.text
    assert client.get("/static/viewer.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/viewer.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/viewer.html").status_code == 404


def test_demo_request_for_bundle_matches_the_conftest_mapping() -> None:
    from app.data_requirements import prefetch_templates
    from terminology import get_terminology

    req = demo_request_for_bundle(sample_bundle("mbc-demo-01"), prefetch_templates(get_terminology()),
                                  hook_instance="x-1")
    assert req["hookInstance"] == "x-1"
    assert req["prefetch"]["patient"]["id"] == "mbc-demo-01"
    assert req["prefetch"]["conditions"]["entry"][0]["resource"]["resourceType"] == "Condition"
    assert all(e["resource"]["resourceType"] == "Observation" for e in req["prefetch"]["observations"]["entry"])


# ----------------------------------------------------------------------------------------------------------
# mbc-cds load
# ----------------------------------------------------------------------------------------------------------


def _transaction_response(request: httpx.Request) -> httpx.Response:
    bundle = orjson.loads(request.content)
    entries = [{"response": {"status": "201 Created",
                             "location": f"{e['request']['url']}/_history/1"}} for e in bundle["entry"]]
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": entries},
                          headers={"content-type": "application/fhir+json;charset=utf-8"})


@respx.mock(assert_all_mocked=True)
def test_load_posts_each_sample_as_a_transaction(respx_mock: respx.MockRouter,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _transaction_response(request)

    respx_mock.post(FHIR).mock(side_effect=handler)
    assert main(["load", "--fhir-server", FHIR + "/", "--token", "tok-1"]) == 0
    ids = [s["id"] for s in list_samples()]
    assert len(seen) == len(ids)
    for req in seen:
        assert req.headers["content-type"] == "application/fhir+json"
        assert req.headers["authorization"] == "Bearer tok-1"
        body = orjson.loads(req.content)
        assert body["resourceType"] == "Bundle" and body["type"] == "transaction"
    # dates are shifted to now: the newest authoredOn/effective date is close to today, not to 2026-11-20
    newest = max(e["resource"].get("effectiveDateTime", "") for r in seen
                 for e in orjson.loads(r.content)["entry"])
    assert newest[:4] == str(datetime.now(UTC).year)
    out = capsys.readouterr().out
    assert f"[1/{len(ids)}] {ids[0]}" in out and "Patient/mbc-demo-01" in out
    assert f"loaded {len(ids)} patient(s)" in out


@respx.mock(assert_all_mocked=True)
def test_load_only_the_samples_asked_for(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(FHIR).mock(side_effect=_transaction_response)
    assert main(["load", "--fhir-server", FHIR, "--sample", "mbc-demo-02", "mbc-demo-05"]) == 0
    assert route.call_count == 2
    assert main(["load", "--fhir-server", FHIR, "--sample", "nope"]) == 2  # usage
    assert route.call_count == 2


@respx.mock(assert_all_mocked=True)
def test_load_fails_with_the_operation_outcome(respx_mock: respx.MockRouter,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing",
         "diagnostics": "HAPI-0543: Transaction bundle entry is invalid"}]}
    respx_mock.post(FHIR).mock(return_value=httpx.Response(400, json=outcome))
    assert main(["load", "--fhir-server", FHIR]) == 1
    err = capsys.readouterr().err
    assert "HTTP 400" in err and "HAPI-0543: Transaction bundle entry is invalid" in err


@respx.mock(assert_all_mocked=True)
def test_load_fails_when_an_entry_is_refused(respx_mock: respx.MockRouter,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        resp = _transaction_response(request)
        doc = resp.json()
        doc["entry"][1]["response"] = {"status": "422 Unprocessable Entity", "outcome": {
            "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                           "diagnostics": "bad code"}]}}
        return httpx.Response(200, json=doc)

    respx_mock.post(FHIR).mock(side_effect=handler)
    assert main(["load", "--fhir-server", FHIR]) == 1
    assert "entry 1: 422 Unprocessable Entity (error: bad code)" in capsys.readouterr().err


@respx.mock(assert_all_mocked=True)
def test_load_waits_for_a_starting_server(respx_mock: respx.MockRouter, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.cli.load.time.sleep", lambda _s: None)
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503, text="starting"),
                    httpx.Response(200, json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})])

    def metadata(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    respx_mock.get(f"{FHIR}/metadata").mock(side_effect=metadata)
    route = respx_mock.post(FHIR).mock(side_effect=_transaction_response)
    assert main(["load", "--fhir-server", FHIR, "--wait", "300", "--sample", "mbc-demo-01"]) == 0
    out = capsys.readouterr().out
    assert "waiting for the FHIR server (ConnectError" in out and "(HTTP 503" in out
    assert "FHIR server ready" in out and route.call_count == 1


@respx.mock(assert_all_mocked=True)
def test_load_gives_up_waiting(respx_mock: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> None:
    respx_mock.get(f"{FHIR}/metadata").mock(return_value=httpx.Response(503))
    assert main(["load", "--fhir-server", FHIR, "--wait", "0.01"]) == 1
    assert "was not ready after 0.01 s (HTTP 503)" in capsys.readouterr().err


def test_load_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--fhir-server", f"http://127.0.0.1:{free_port()}/fhir", "--sample", "mbc-demo-01"]) == 1
    assert "cannot reach" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# mbc-cds hook (service mocked)
# ----------------------------------------------------------------------------------------------------------

CARD = {"uuid": "c-1", "summary": "Refer to palliative care", "indicator": "warning",
        "source": {"label": "mbc-cds", "topic": {"system": "http://x", "code": "referral-palliative-care"}}}


@respx.mock(assert_all_mocked=True)
def test_hook_without_prefetch_sends_fhir_server_and_token_only(respx_mock: respx.MockRouter,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    route = respx_mock.post(SERVICE).mock(return_value=httpx.Response(200, json={"cards": [CARD]}))
    rc = main(["hook", "--service", SERVICE, "--fhir-server", FHIR + "/", "--patient", "p-1", "--token", "tok"])
    assert rc == 0
    body = orjson.loads(route.calls.last.request.content)
    assert body["hook"] == "patient-view" and uuid.UUID(body["hookInstance"])
    assert body["fhirServer"] == FHIR
    assert body["fhirAuthorization"]["access_token"] == "tok"
    assert body["fhirAuthorization"]["token_type"] == "Bearer"
    assert body["context"] == {"patientId": "p-1", "userId": "Practitioner/example"}
    assert "prefetch" not in body
    assert "authorization" not in route.calls.last.request.headers
    out = capsys.readouterr().out
    assert "Refer to palliative care" in out and "rule: referral-palliative-care" in out


@respx.mock(assert_all_mocked=True)
def test_hook_with_prefetch_renders_templates_and_follows_next_links(respx_mock: respx.MockRouter) -> None:
    discovery = {"services": [{"id": "mbc-palliative-care", "hook": "patient-view", "description": "d",
                               "prefetch": {"patient": "Patient/{{context.patientId}}",
                                            "conditions": "Condition?patient={{context.patientId}}",
                                            "goals": "Goal?patient={{context.patientId}}&status=active"}}]}
    respx_mock.get(DISCOVERY).mock(return_value=httpx.Response(200, json=discovery))
    respx_mock.get(f"{FHIR}/Patient/p%201").mock(return_value=httpx.Response(
        200, json={"resourceType": "Patient", "id": "p 1"}))
    page2 = f"{FHIR}?_getpages=abc&_getpagesoffset=1&_count=1&_bundletype=searchset"
    # a server behind a proxy that names itself by its inside address: the link is re-based onto --fhir-server
    inside = page2.replace("http://fhir.example.org", "http://10.0.0.7:8080")
    respx_mock.get(url__startswith=f"{FHIR}/Condition").mock(return_value=httpx.Response(200, json={
        "resourceType": "Bundle", "type": "searchset", "total": 2,
        "link": [{"relation": "next", "url": inside}],
        "entry": [{"resource": {"resourceType": "Condition", "id": "c1"}}]}))
    respx_mock.get(page2).mock(return_value=httpx.Response(200, json={
        "resourceType": "Bundle", "type": "searchset", "total": 2,
        "entry": [{"resource": {"resourceType": "Condition", "id": "c2"}}]}))
    goals = respx_mock.get(url__startswith=f"{FHIR}/Goal").mock(return_value=httpx.Response(
        403, json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}))
    service = respx_mock.post(SERVICE).mock(return_value=httpx.Response(200, json={"cards": []}))

    assert main(["hook", "--service", SERVICE, "--fhir-server", FHIR, "--patient", "p 1", "--prefetch"]) == 0
    assert str(goals.calls.last.request.url) == f"{FHIR}/Goal?patient=p%201&status=active"
    body = orjson.loads(service.calls.last.request.content)
    assert body["prefetch"]["patient"]["id"] == "p 1"
    assert [e["resource"]["id"] for e in body["prefetch"]["conditions"]["entry"]] == ["c1", "c2"]
    assert "goals" not in body["prefetch"]  # unreadable here: left for the service to read itself


def _write_ec_key(tmp_path: Path) -> tuple[Path, Any]:
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "ehr-key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path, key


@respx.mock(assert_all_mocked=True)
def test_hook_signs_a_cds_hooks_jwt_per_call(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    key_path, key = _write_ec_key(tmp_path)
    respx_mock.get(DISCOVERY).mock(return_value=httpx.Response(200, json={"services": [
        {"id": "mbc-palliative-care", "hook": "patient-view", "description": "d", "prefetch": {}}]}))
    service = respx_mock.post(SERVICE).mock(return_value=httpx.Response(200, json={"cards": []}))
    rc = main(["hook", "--service", SERVICE, "--fhir-server", FHIR, "--patient", "p1", "--prefetch",
               "--jwt-key", str(key_path), "--jwt-iss", "https://ehr.example.org", "--jwt-kid", "k-1"])
    assert rc == 0
    tokens = [c.request.headers["authorization"].removeprefix("Bearer ") for c in respx_mock.calls]
    assert len(tokens) == 2
    public = key.public_key()
    for token, aud in zip(tokens, (DISCOVERY, SERVICE), strict=True):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES384" and header["kid"] == "k-1" and header["typ"] == "JWT"
        claims = jwt.decode(token, public, algorithms=["ES384"], audience=aud, issuer="https://ehr.example.org")
        assert claims["exp"] - claims["iat"] == 300 and uuid.UUID(claims["jti"])
        assert "sub" not in claims
    assert len({jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}) == 2
    assert service.called


def test_hook_jwt_options_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hook", "--service", SERVICE, "--fhir-server", FHIR, "--patient", "p1", "--jwt-iss", "x"]) == 2
    assert "go together" in capsys.readouterr().err


@respx.mock(assert_all_mocked=True)
def test_hook_error_response_prints_the_json_error_and_exits_1(respx_mock: respx.MockRouter,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    error = {"error": "no-data", "status": 412, "detail": "no prefetch data and no fhirServer"}
    respx_mock.post(SERVICE).mock(return_value=httpx.Response(412, json=error))
    assert main(["hook", "--service", SERVICE, "--fhir-server", FHIR, "--patient", "p1"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == error
    assert "HTTP 412" in captured.err


def test_hook_needs_a_service_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hook", "--service", "http://cds.example.org/", "--fhir-server", FHIR, "--patient", "p1",
                 "--prefetch"]) == 2  # usage
    assert "--service must be the service URL" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# mbc-cds hook against the real app (uvicorn), with JWT verification on; FHIR server mocked
# ----------------------------------------------------------------------------------------------------------


def test_hook_against_the_real_app_with_jwt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path, key = _write_ec_key(tmp_path)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k-1", "alg": "ES384", "use": "sig"})
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]))
    bundle = sample_bundle("mbc-demo-03", now=datetime.now(UTC))
    resources = bundle_resources(bundle)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)

    def fhir(request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")  # /baseR4/Type[/id]
        rtype = parts[2]
        if len(parts) == 4:
            match = [r for r in by_type.get(rtype, []) if r["id"] == parts[3]]
            return httpx.Response(200 if match else 404, json=match[0] if match else {
                "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        items = by_type.get(rtype, [])
        if rtype in ("MedicationRequest", "MedicationStatement"):
            items = [r for r in items if r.get("status") == "active"]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "total": len(items),
                                         "entry": [{"resource": r} for r in items]})

    with serve_app(tmp_path, require_jwt=True, clients_file=str(clients), allowed_fhir_servers=FHIR) as (base, _db), \
            respx.mock(assert_all_mocked=True) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        url = f"{base}/cds-services/mbc-palliative-care"
        common = ["hook", "--service", url, "--fhir-server", FHIR, "--patient", "mbc-demo-03", "--json"]
        signed = ["--jwt-key", str(key_path), "--jwt-iss", "https://ehr.example.org", "--jwt-kid", "k-1"]
        assert main([*common, *signed]) == 0
        without_prefetch = rules_of(json.loads(capsys.readouterr().out)["cards"])
        assert main([*common, *signed, "--prefetch"]) == 0
        with_prefetch = rules_of(json.loads(capsys.readouterr().out)["cards"])
        assert main(common) == 1  # no JWT: 401, printed as JSON
        unsigned = json.loads(capsys.readouterr().out)
    assert unsigned["status"] == 401 and unsigned["error"] == "unauthorized"
    assert "emergency-spinal-cord-compression" in without_prefetch
    assert with_prefetch == without_prefetch
