"""Hostile input: no request shape, bundle shape or resource shape produces a 500.

Property-based (hypothesis) over request envelopes, prefetch values, Bundle entries and resources with wrong
types in the fields the engine reads; a schemathesis run over the service's own OpenAPI document; and the
explicit limits (body size, prefetch entries, nesting depth)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.data_requirements import prefetch_types, record_types
from app.main import create_app
from cds_hooks.models import Card
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings

ALLOWED = {200, 400, 401, 404, 412, 413}
PID = "pat-fuzz"
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(tmp, max_prefetch_resources=500, max_body_bytes=2 * 1024 * 1024,
                                   fhir_timeout_seconds=1.0))
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.runtime.clock = lambda: NOW
        yield c


def check(resp: Any) -> None:
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    if resp.status_code == 200:
        assert isinstance(body, dict) and isinstance(body.get("cards"), list), body
        rules = []
        for card in body["cards"]:
            Card.model_validate(card)
            rules.append(card["source"]["topic"]["code"])
        assert len(rules) == len(set(rules)), rules  # one card per rule at most
    else:
        assert isinstance(body.get("error"), str) and body.get("status") == resp.status_code


def post(client: TestClient, body: Any) -> Any:
    # stdlib json: it writes integers of any size and NaN / Infinity tokens (which must give a 400)
    raw = json.dumps(body).encode()
    return client.post(SERVICE_URL, content=raw, headers={"content-type": "application/json"})


# ------------------------------------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "NaN", "Infinity", "-1e999", "1e400", "2026-13-45", "2026-02-30", "yesterday",
                     "2026-11-20T25:61:00Z", "-0001-01-01", "99999-01-01", "2026", "2026-11", "T10:00",
                     "2026-11-20T10:00:00", "2026-11-20T10:00:00+99:00", "\x00", "Patient/", "Patient/x/y",
                     "http://loinc.org", "C79.51", "254837009", "active", "mmol/L", "\u202e\ufeff"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)

RESOURCE_TYPES = [*sorted(record_types()), "Bundle", "OperationOutcome", "Unknown", ""]
# fields the clinical layer reads, by any resource type
FIELDS = ["id", "subject", "patient", "code", "category", "clinicalStatus", "verificationStatus", "bodySite",
          "onsetDateTime", "onsetPeriod", "onsetAge", "abatementDateTime", "recordedDate", "effectiveDateTime",
          "effectivePeriod", "effectiveInstant", "issued", "valueQuantity", "valueInteger", "valueDecimal",
          "valueCodeableConcept", "valueString", "component", "status", "intent", "authoredOn", "dateTime",
          "medicationCodeableConcept", "medicationReference", "contained", "dosageInstruction", "reasonCode",
          "reasonReference", "period", "class", "serviceType", "participant", "date", "type", "provision",
          "performedDateTime", "performedPeriod", "occurrenceDateTime", "lifecycleStatus", "description",
          "scope", "content", "stage", "evidence", "entry", "link", "meta", "extension", "birthDate",
          "deceasedBoolean", "deceasedDateTime"]

codings = st.one_of(
    st.fixed_dictionaries({"system": st.sampled_from(["http://snomed.info/sct", "http://loinc.org",
                                                      "http://hl7.org/fhir/sid/icd-10-cm",
                                                      "http://www.nlm.nih.gov/research/umls/rxnorm", "", 1]),
                           "code": st.one_of(st.sampled_from(["254837009", "C79.51", "C50.911", "89243-0",
                                                              "72514-3", "1719286", "7982", "C79.31",
                                                              "2000-8", "29463-7"]), json_values)}),
    json_values,
)
codeable = st.one_of(st.fixed_dictionaries({"coding": st.one_of(st.lists(codings, max_size=3), codings)}),
                     st.fixed_dictionaries({"coding": codings}), st.text(max_size=10), json_values)
quantities = st.one_of(
    st.fixed_dictionaries({"value": st.one_of(st.sampled_from(["7", "NaN", "1e400", "", "-0"]),
                                              st.integers(min_value=-(10**40), max_value=10**40),
                                              st.floats(allow_nan=False, allow_infinity=False), json_values),
                           "unit": st.one_of(st.sampled_from(["mmol/L", "mg/dL", "%", "kg", "{score}"]), scalars),
                           "system": st.one_of(st.just("http://unitsofmeasure.org"), scalars)}),
    json_values,
)
field_values = st.one_of(codeable, quantities, json_values, st.lists(codeable, max_size=3))


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": draw(st.sampled_from(RESOURCE_TYPES)),
                         "id": draw(st.one_of(st.text(max_size=6), st.integers(), st.none()))}
    if draw(st.booleans()):
        r["subject"] = draw(st.one_of(st.just({"reference": f"Patient/{PID}"}), json_values))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        r[name] = draw(field_values)
    if draw(st.integers(0, 9)) == 0:
        del r["resourceType"]
    return r


entries = st.one_of(
    st.builds(lambda r: {"resource": r}, resources()),
    st.builds(lambda r: {"resource": r, "search": {"mode": "match"}}, resources()),
    json_values,  # strings, numbers, lists, objects without resource
    st.builds(lambda v: {"resource": v}, json_values),
    st.builds(lambda v: {"fullUrl": v}, scalars),
)
bundles = st.fixed_dictionaries({"resourceType": st.just("Bundle"),
                                 "type": st.one_of(st.just("searchset"), scalars),
                                 "entry": st.one_of(st.lists(entries, max_size=8), json_values)})
prefetch_values = st.one_of(bundles, resources(), json_values,
                            st.just({"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}))
PREFETCH_KEYS = [*prefetch_types(), "extra", "everything"]


def valid_base() -> dict[str, Any]:
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    return hook_request([
        {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Condition", "id": "c-breast", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": active, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c-bone", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": active,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
        {"resourceType": "Observation", "id": "o-pain", "status": "final", "subject": {"reference": f"Patient/{PID}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
         "effectiveDateTime": "2026-11-18", "valueQuantity": {"value": 8, "unit": "{score}"}},
    ], PID)


# ------------------------------------------------------------------------------------------ properties


@FUZZ
@given(body=st.one_of(json_values, st.dictionaries(
    st.sampled_from(["hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch", "x"]),
    json_values, max_size=7)))
def test_any_json_body(client: TestClient, body: Any) -> None:
    check(post(client, body))


@FUZZ
@given(hook=st.one_of(st.just("patient-view"), scalars), instance=st.one_of(st.just("i-1"), scalars),
       context=st.one_of(st.just({"patientId": PID}), st.fixed_dictionaries({"patientId": json_values}),
                         json_values),
       server=st.one_of(st.none(), st.just("not a url"), st.just("ftp://x/y"), scalars),
       authorization=st.one_of(st.none(), st.just({"access_token": ""}), json_values),
       prefetch=st.one_of(st.none(), st.dictionaries(st.sampled_from(PREFETCH_KEYS), prefetch_values, max_size=5),
                          json_values))
def test_request_envelopes(client: TestClient, hook: Any, instance: Any, context: Any, server: Any,
                           authorization: Any, prefetch: Any) -> None:
    body: dict[str, Any] = {"hook": hook, "hookInstance": instance, "context": context, "prefetch": prefetch}
    if server is not None:
        body["fhirServer"] = server
    if authorization is not None:
        body["fhirAuthorization"] = authorization
    check(post(client, body))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(PREFETCH_KEYS), prefetch_values, min_size=1, max_size=4))
def test_prefetch_values_of_every_shape(client: TestClient, changes: dict[str, Any]) -> None:
    body = valid_base()
    body["prefetch"].update(changes)
    check(post(client, body))


@FUZZ
@given(extra=st.lists(entries, min_size=1, max_size=12), key=st.sampled_from(PREFETCH_KEYS))
def test_bundle_entries_of_every_shape(client: TestClient, extra: list[Any], key: str) -> None:
    body = valid_base()
    bundle = body["prefetch"].get(key)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        body["prefetch"][key] = bundle
    bundle["entry"] = list(bundle.get("entry", [])) + extra
    check(post(client, body))


@FUZZ
@given(field=st.sampled_from(FIELDS), value=field_values,
       target=st.sampled_from(["c-breast", "c-bone", "o-pain", PID]))
def test_wrong_types_in_fields_the_engine_reads(client: TestClient, field: str, value: Any, target: str) -> None:
    body = valid_base()
    for v in body["prefetch"].values():
        for r in ([e["resource"] for e in v["entry"]] if isinstance(v, dict) and "entry" in v else [v]):
            if isinstance(r, dict) and r.get("id") == target:
                r[field] = copy.deepcopy(value)
    check(post(client, body))


@FUZZ
@given(feedback=st.one_of(json_values, st.fixed_dictionaries({"feedback": st.one_of(json_values, st.lists(
    st.fixed_dictionaries({"card": scalars, "outcome": st.one_of(st.sampled_from(["accepted", "overridden"]),
                                                                   scalars),
                           "outcomeTimestamp": scalars, "acceptedSuggestions": json_values,
                           "overrideReason": json_values}), max_size=3))})))
def test_feedback_bodies(client: TestClient, feedback: Any) -> None:
    resp = client.post(f"{SERVICE_URL}/feedback", content=json.dumps(feedback).encode(),
                       headers={"content-type": "application/json"})
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text[:300])


# ------------------------------------------------------------------------------------ explicit cases


def _rules(resp: Any) -> list[str]:
    return [c["source"]["topic"]["code"] for c in resp.json()["cards"]]


def _incomplete_detail(resp: Any) -> str:
    card = next(c for c in resp.json()["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    return card["summary"] + card.get("detail", "")


def test_entries_that_are_not_resources_are_skipped_with_a_note(client: TestClient) -> None:
    body = valid_base()
    body["prefetch"]["conditions"]["entry"] += ["Condition/123", 42, [1, 2], {"fullUrl": "urn:x"},
                                               {"resource": "not an object"}, None]
    resp = post(client, body)
    check(resp)
    assert "mbc-overview" in _rules(resp)  # what could be read still counts
    detail = _incomplete_detail(resp)
    assert "6 Bundle entries without a FHIR resource" in detail and "Condition" in detail


def test_resources_without_resource_type_are_noted(client: TestClient) -> None:
    body = valid_base()
    body["prefetch"]["observations"]["entry"].append({"resource": {"id": "x", "status": "final"}})
    resp = post(client, body)
    check(resp)
    assert "resourceType" in _incomplete_detail(resp)


def test_entry_that_is_not_a_list(client: TestClient) -> None:
    body = valid_base()
    body["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset", "entry": "oops"}
    resp = post(client, body)
    check(resp)
    assert "MedicationRequest" in _incomplete_detail(resp)


def test_extra_prefetch_bundle_with_junk_entries(client: TestClient) -> None:
    body = valid_base()
    body["prefetch"]["everything"] = {"resourceType": "Bundle", "type": "collection", "entry": [1, "x"]}
    resp = post(client, body)
    check(resp)
    assert "2 Bundle entries" in _incomplete_detail(resp)


def test_ids_of_any_json_type_in_extra_prefetch_keys(client: TestClient) -> None:
    """Regression (found by the fuzzer): a resource id that is an object or a list was hashed and gave a 500."""
    body = valid_base()
    body["prefetch"]["everything"] = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Condition", "id": {"x": 1}}},
        {"resource": {"resourceType": "Condition", "id": [1]}}, {"resource": {"id": {}}}]}
    body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": "Condition", "id": {"y": []}}})
    check(post(client, body))
    body["prefetch"]["extra"] = {"resourceType": "Observation", "id": {}}
    check(post(client, body))


def test_strings_where_objects_belong_are_400(client: TestClient) -> None:
    for change in ({"context": "patient-1"}, {"prefetch": ["a"]}, {"fhirAuthorization": "token"},
                   {"fhirServer": "not a url"}, {"hookInstance": ""}, {"context": {"patientId": {"x": 1}}}):
        body = dict(valid_base(), **change)
        resp = post(client, body)
        assert resp.status_code == 400, (change, resp.text)
        assert resp.json()["detail"]


def test_nan_and_infinity_tokens_are_400(client: TestClient) -> None:
    for raw in (b'{"hook": NaN}', b'{"hook": "patient-view", "x": Infinity}', b'{"a": 1e400}'):
        resp = client.post(SERVICE_URL, content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"] == "malformed-json"


def test_too_many_prefetch_entries_is_413(client: TestClient) -> None:
    body = valid_base()
    body["prefetch"]["observations"]["entry"] = [{"resource": {"resourceType": "Observation", "id": str(i)}}
                                                 for i in range(501)]
    resp = post(client, body)
    assert resp.status_code == 413 and resp.json()["error"] == "prefetch-too-large"
    body["prefetch"]["observations"]["entry"] = body["prefetch"]["observations"]["entry"][:400]
    check(post(client, body))


def test_nesting_limits(client: TestClient) -> None:
    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"extension": [value]}
        return value

    body = valid_base()
    body["context"]["junk"] = nested(40)
    resp = post(client, body)
    assert resp.status_code == 400 and resp.json()["error"] == "too-deeply-nested"
    # inside the prefetch, deep junk in a field the engine does not read is harmless: the record is read
    body = valid_base()
    body["prefetch"]["conditions"]["entry"][0]["resource"]["extension"] = [nested(400)]
    resp = post(client, body)
    check(resp)
    assert resp.status_code == 200
    # orjson's own limit (1024 levels) also gives a clean 400
    raw = b'{"hook": "patient-view", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    resp = client.post(SERVICE_URL, content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "malformed-json"
    # real FHIR depth is fine
    body = valid_base()
    body["prefetch"]["conditions"]["entry"][0]["resource"]["extension"] = [nested(8)]
    check(post(client, body))


def test_body_size_limit_with_and_without_content_length(client: TestClient) -> None:
    big = b'{"hook": "patient-view", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    resp = client.post(SERVICE_URL, content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "payload-too-large"

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        yield b'{"hook": "patient-view", "pad": "'
        for _ in range(40):
            yield b"x" * (100 * 1024)
        yield b'"}'

    resp = client.post(SERVICE_URL, content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    resp = client.post(f"{SERVICE_URL}/feedback", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_lying_content_length_is_not_trusted(client: TestClient) -> None:
    body = json.dumps(valid_base()).encode()
    resp = client.post(SERVICE_URL, content=body, headers={"content-type": "application/json",
                                                           "content-length": str(len(body))})
    check(resp)


# ------------------------------------------------------------------------------------------ schemathesis


def _schema_app() -> Any:
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="mbc-schemathesis-"))
    atexit.register(shutil.rmtree, tmp, True)
    return create_app(make_settings(tmp, fhir_timeout_seconds=1.0))


# schemathesis' ASGI transport runs the app's lifespan itself
schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_schemathesis(case: schemathesis.Case) -> None:
    # generated fhirServer URLs must not reach the network: every outgoing FHIR read is a 503 here
    with respx.mock(assert_all_called=False) as fhir:
        fhir.route().respond(503)
        case.call_and_validate(checks=[schemathesis.checks.not_a_server_error])
