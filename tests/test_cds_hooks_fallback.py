"""Prefetch resolution against a (mocked) FHIR server."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import orjson
import pytest
import respx

from cds_hooks.fallback import FetchProblem, PrefetchResolver, PrefetchResult
from cds_hooks.models import HookRequest

BASE = "https://fhir.example.org/r4"
TOKEN = "secret-access-token-xyz"
PID = "pat-77"


def _request(*, prefetch=None, server=BASE, token=TOKEN, **context) -> HookRequest:
    body = {
        "hook": "patient-view",
        "hookInstance": "hi-1",
        "context": {"patientId": PID, "userId": "Practitioner/u1", **context},
    }
    if server is not None:
        body["fhirServer"] = server
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "svc",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return HookRequest.model_validate(body)


def bundle(*resources, next_url=None, outcome=None):
    b = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if outcome is not None:
        b["entry"].append({"resource": outcome, "search": {"mode": "outcome"}})
    if next_url:
        b["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return b


def obs(i):
    return {"resourceType": "Observation", "id": f"o{i}"}


def oo(diag):
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diag}],
    }


TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


@pytest.fixture
def mock():
    with respx.mock(assert_all_called=False) as router:
        yield router


def problem_kinds(result: PrefetchResult) -> dict[str, str]:
    return {p.key: p.kind for p in result.problems}


# ------------------------------------------------------------------------------------------ prefetch values


async def test_prefetch_values_used_without_fetch(client, mock):
    route = mock.route(host="fhir.example.org")
    pre = {
        "patient": {"resourceType": "Patient", "id": PID},
        "observations": bundle(obs(1), obs(2), outcome=oo("warning only")),
    }
    res = await PrefetchResolver(client).resolve(_request(prefetch=pre), TEMPLATES)
    assert not route.called
    assert res.resources["patient"] == [{"resourceType": "Patient", "id": PID}]
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2"]  # outcome entry left out
    assert res.problems == []
    assert res.had_any_data
    assert res.sources == {"patient": "prefetch", "observations": "prefetch"}


async def test_null_means_no_data_and_no_fetch(client, mock):
    route = mock.route(host="fhir.example.org")
    res = await PrefetchResolver(client).resolve(
        _request(prefetch={"patient": None, "observations": None}), TEMPLATES
    )
    assert not route.called
    assert res.resources == {"patient": [], "observations": []}
    assert res.sources == {"patient": "null", "observations": "null"}
    assert res.problems == [] and res.had_any_data


async def test_empty_bundle_counts_as_data(client):
    res = await PrefetchResolver(client).resolve(
        _request(server=None, token=None, prefetch={"observations": bundle()}),
        {"observations": TEMPLATES["observations"]},
    )
    assert res.had_any_data and res.resources["observations"] == [] and res.problems == []


async def test_absent_keys_are_fetched(client, mock):
    mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    obs_route = mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, json=bundle(obs(1)))
    res = await PrefetchResolver(client).resolve(
        _request(prefetch={"patient": {"resourceType": "Patient", "id": PID}}), TEMPLATES
    )
    assert obs_route.call_count == 1
    assert res.sources == {"patient": "prefetch", "observations": "server"}
    assert res.resources["observations"] == [obs(1)]
    assert res.pages_fetched == 1
    assert res.problems == [] and res.had_any_data


async def test_absent_without_server_is_missing(client):
    res = await PrefetchResolver(client).resolve(
        _request(server=None, token=None, prefetch={"patient": {"resourceType": "Patient", "id": PID}}),
        TEMPLATES,
    )
    assert problem_kinds(res) == {"observations": "missing"}
    assert res.had_any_data  # the patient key had a value


async def test_no_prefetch_no_server_means_no_data(client):
    for prefetch in (None, {}, {"unrelated": {"resourceType": "Patient"}}):
        res = await PrefetchResolver(client).resolve(
            _request(server=None, token=None, prefetch=prefetch), TEMPLATES
        )
        assert res.had_any_data is False
        assert problem_kinds(res) == {"patient": "missing", "observations": "missing"}


async def test_operation_outcome_prefetch_without_server(client):
    res = await PrefetchResolver(client).resolve(
        _request(server=None, token=None, prefetch={"patient": oo("EHR failed"), "observations": None}),
        TEMPLATES,
    )
    (p,) = res.problems
    assert (p.key, p.kind) == ("patient", "operation-outcome")
    assert "EHR failed" in p.detail
    assert res.resources["patient"] == []
    assert res.had_any_data  # observations: null is a value


async def test_operation_outcome_prefetch_only_means_no_data(client):
    res = await PrefetchResolver(client).resolve(
        _request(server=None, token=None, prefetch={"patient": oo("x"), "observations": oo("y")}), TEMPLATES
    )
    assert res.had_any_data is False


async def test_operation_outcome_prefetch_refetched_from_server(client, mock):
    route = mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    res = await PrefetchResolver(client).resolve(
        _request(prefetch={"patient": oo("EHR failed"), "observations": None}), TEMPLATES
    )
    assert route.called
    assert res.resources["patient"] == [{"resourceType": "Patient", "id": PID}]
    assert res.sources["patient"] == "server"
    assert res.problems == []  # the server answered in full
    assert [(p.key, p.kind) for p in res.recovered] == [("patient", "operation-outcome")]


async def test_operation_outcome_prefetch_refetch_fails(client, mock):
    mock.get(f"{BASE}/Patient/{PID}").respond(500)
    res = await PrefetchResolver(client).resolve(
        _request(prefetch={"patient": oo("EHR failed"), "observations": None}), TEMPLATES
    )
    assert sorted((p.key, p.kind) for p in res.problems) == [
        ("patient", "http"),
        ("patient", "operation-outcome"),
    ]
    assert res.unreadable_keys() == {"patient"}


async def test_non_resource_prefetch_value_is_malformed(client):
    res = await PrefetchResolver(client).resolve(
        _request(server=None, token=None, prefetch={"patient": "123", "observations": [1]}), TEMPLATES
    )
    assert problem_kinds(res) == {"patient": "malformed", "observations": "malformed"}
    assert not res.had_any_data


async def test_template_error_is_a_problem(client, mock):
    route = mock.route(host="fhir.example.org")
    res = await PrefetchResolver(client).resolve(
        _request(prefetch={"patient": None}),
        {"patient": "Patient/{{context.patientId}}", "role": "PractitionerRole/{{userPractitionerRoleId}}"},
    )
    assert not route.called
    assert problem_kinds(res) == {"role": "missing"}
    assert "userPractitionerRoleId" in res.problems[0].detail


# ---------------------------------------------------------------------------------------------- headers


async def test_bearer_and_accept_headers(client, mock):
    route = mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    await PrefetchResolver(client).resolve(_request(), {"patient": TEMPLATES["patient"]})
    req = route.calls.last.request
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Accept"] == "application/fhir+json"


async def test_no_authorization_header_without_token(client, mock):
    route = mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    res = await PrefetchResolver(client).resolve(_request(token=None), {"patient": TEMPLATES["patient"]})
    assert "Authorization" not in route.calls.last.request.headers
    assert res.had_any_data


async def test_server_with_trailing_slash(client, mock):
    route = mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    await PrefetchResolver(client).resolve(_request(server=BASE + "/"), {"patient": TEMPLATES["patient"]})
    assert route.called


async def test_page_size_added_to_searches(client, mock):
    route = mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "_count": "200"}).respond(
        200, json=bundle()
    )
    read = mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    await PrefetchResolver(client, page_size=200).resolve(_request(), TEMPLATES)
    assert route.called
    assert "_count" not in str(read.calls.last.request.url)


# ---------------------------------------------------------------------------------------------- paging


async def test_paging_three_pages_absolute_and_relative_links(client, mock):
    p1 = mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), obs(2), next_url=f"{BASE}/Observation?patient={PID}&page=2")
    )
    p2 = mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "page": "2"}).respond(
        200,
        json=bundle(obs(3), next_url=f"Observation?patient={PID}&page=3"),  # relative to the base
    )
    p3 = mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "page": "3"}).respond(
        200, json=bundle(obs(4))
    )
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert (p1.call_count, p2.call_count, p3.call_count) == (1, 1, 1)
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2", "o3", "o4"]
    assert res.pages_fetched == 3
    assert res.problems == []
    for route in (p1, p2, p3):
        assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_paging_query_only_and_root_relative_links(client, mock):
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url="?_getpages=abc&_getpagesoffset=1")
    )
    mock.get(BASE, params__eq={"_getpages": "abc", "_getpagesoffset": "1"}).respond(
        200, json=bundle(obs(2), next_url="/r4?_getpages=abc&_getpagesoffset=2")
    )
    mock.get(BASE, params__eq={"_getpages": "abc", "_getpagesoffset": "2"}).respond(200, json=bundle(obs(3)))
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2", "o3"]
    assert res.problems == []


async def test_next_link_to_other_origin_is_rebased(client, mock):
    foreign = mock.route(host="internal-hapi:8080")
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url="http://internal-hapi:8080/r4?_getpages=z")
    )
    rebased = mock.get(BASE, params__eq={"_getpages": "z"}).respond(200, json=bundle(obs(2)))
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert not foreign.called  # the token never leaves the fhirServer origin
    assert rebased.called
    assert len(res.resources["observations"]) == 2


async def test_paging_loop_detected(client, mock):
    first = f"{BASE}/Observation?patient={PID}"
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url=f"{BASE}/Observation?patient={PID}&page=2")
    )
    p2 = mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "page": "2"}).respond(
        200, json=bundle(obs(2), next_url=first)
    )
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert p2.call_count == 1
    assert problem_kinds(res) == {"observations": "paging-loop"}
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2"]  # what was read is kept
    assert res.sources["observations"] == "server"
    assert res.had_any_data


async def test_self_referencing_next_link(client, mock):
    route = mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url=f"{BASE}/Observation?patient={PID}")
    )
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert route.call_count == 1
    assert problem_kinds(res) == {"observations": "paging-loop"}


async def test_page_cap(client, mock):
    def page(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json=bundle(obs(n), next_url=f"Observation?patient={PID}&page={n + 1}"))

    route = mock.get(f"{BASE}/Observation").mock(side_effect=page)
    res = await PrefetchResolver(client, max_pages=3).resolve(
        _request(), {"observations": TEMPLATES["observations"]}
    )
    assert route.call_count == 3
    assert problem_kinds(res) == {"observations": "too-many-pages"}
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2", "o3"]


async def test_error_on_second_page_keeps_first(client, mock):
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url=f"Observation?patient={PID}&page=2")
    )
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "page": "2"}).respond(503)
    res = await PrefetchResolver(client).resolve(_request(), {"observations": TEMPLATES["observations"]})
    assert [(p.kind, p.status) for p in res.problems] == [("http", 503)]
    assert res.resources["observations"] == [obs(1)]


# ---------------------------------------------------------------------------------------------- server faults


@pytest.mark.parametrize("status", [401, 403, 404, 500, 502])
async def test_http_errors(client, mock, status):
    mock.get(f"{BASE}/Patient/{PID}").respond(status, json=oo(f"problem number {status}"))
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, json=bundle(obs(1)))
    res = await PrefetchResolver(client).resolve(_request(), TEMPLATES)
    (p,) = res.problems
    assert p == FetchProblem("patient", "http", status, f"HTTP {status}: problem number {status}")
    assert res.resources["patient"] == []
    assert res.sources["patient"] == "unavailable"
    assert res.resources["observations"] == [obs(1)]
    assert res.had_any_data


async def test_http_error_with_plain_body_and_long_diagnostics(client, mock):
    mock.get(f"{BASE}/Patient/{PID}").respond(500, text="<html>Internal error</html>")
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(400, json=oo("y" * 1000))
    res = await PrefetchResolver(client).resolve(_request(), TEMPLATES)
    by_key = {p.key: p for p in res.problems}
    assert by_key["patient"].detail == "HTTP 500"
    assert by_key["observations"].detail == "HTTP 400: " + "y" * 200


async def test_all_fetches_failing_means_no_data(client, mock):
    mock.route(host="fhir.example.org").respond(401)
    res = await PrefetchResolver(client).resolve(_request(), TEMPLATES)
    assert res.had_any_data is False
    assert {(p.kind, p.status) for p in res.problems} == {("http", 401)}


async def test_operation_outcome_response(client, mock):
    mock.get(f"{BASE}/Patient/{PID}").respond(200, json=oo("cannot read\nthis one"))
    res = await PrefetchResolver(client).resolve(_request(), {"patient": TEMPLATES["patient"]})
    (p,) = res.problems
    assert (p.kind, p.detail) == ("operation-outcome", "cannot read this one")
    assert res.resources["patient"] == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2, 3]", b'"text"', b'{"no": "resourceType"}', b""],
)
async def test_malformed_responses(client, mock, content):
    mock.get(f"{BASE}/Patient/{PID}").respond(200, content=content)
    res = await PrefetchResolver(client).resolve(_request(), {"patient": TEMPLATES["patient"]})
    assert problem_kinds(res) == {"patient": "malformed"}
    assert res.had_any_data is False


async def test_response_size_bound(client, mock):
    big = orjson.dumps(bundle(*[obs(i) for i in range(100)]))
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, content=big)
    res = await PrefetchResolver(client, max_bytes=1000).resolve(
        _request(), {"observations": TEMPLATES["observations"]}
    )
    assert problem_kinds(res) == {"observations": "malformed"}
    assert "larger than" in res.problems[0].detail


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
async def test_timeouts(client, mock, exc):
    mock.get(f"{BASE}/Patient/{PID}").mock(side_effect=exc)
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, json=bundle(obs(1)))
    res = await PrefetchResolver(client).resolve(_request(), TEMPLATES)
    assert problem_kinds(res) == {"patient": "timeout"}
    assert res.resources["observations"] == [obs(1)]


async def test_connection_error(client, mock):
    mock.get(f"{BASE}/Patient/{PID}").mock(side_effect=httpx.ConnectError)
    res = await PrefetchResolver(client).resolve(_request(), {"patient": TEMPLATES["patient"]})
    assert [(p.kind, p.status) for p in res.problems] == [("http", None)]


async def test_total_deadline_with_slow_server(client, mock):
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json={"resourceType": "Patient", "id": PID})

    mock.get(f"{BASE}/Patient/{PID}").mock(side_effect=slow)
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, json=bundle(obs(1)))
    t0 = time.perf_counter()
    res = await PrefetchResolver(client, timeout_total=0.3).resolve(_request(), TEMPLATES)
    assert time.perf_counter() - t0 < 2
    assert problem_kinds(res) == {"patient": "timeout"}
    assert "deadline" in res.problems[0].detail
    assert res.resources["observations"] == [obs(1)]  # other keys keep what they read
    assert res.had_any_data


async def test_total_deadline_with_trickling_body(client, mock):
    async def trickle():
        yield b'{"resourceType": "Bundle", "entry": ['
        for _ in range(100):
            await asyncio.sleep(0.05)
            yield b" "

    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, content=trickle())
    t0 = time.perf_counter()
    res = await PrefetchResolver(client, timeout_total=0.3).resolve(
        _request(), {"observations": TEMPLATES["observations"]}
    )
    assert time.perf_counter() - t0 < 2
    assert problem_kinds(res) == {"observations": "timeout"}
    assert res.had_any_data is False


async def test_deadline_keeps_pages_already_read(client, mock):
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(
        200, json=bundle(obs(1), next_url=f"Observation?patient={PID}&page=2")
    )

    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle(obs(2)))

    mock.get(f"{BASE}/Observation", params__eq={"patient": PID, "page": "2"}).mock(side_effect=slow)
    res = await PrefetchResolver(client, timeout_total=0.3).resolve(
        _request(), {"observations": TEMPLATES["observations"]}
    )
    assert problem_kinds(res) == {"observations": "timeout"}
    assert res.resources["observations"] == [obs(1)]
    assert res.had_any_data


async def test_keys_fetched_in_parallel(client, mock):
    async def slow_ok(request):
        await asyncio.sleep(0.3)
        if request.url.path.endswith(PID):
            return httpx.Response(200, json={"resourceType": "Patient", "id": PID})
        return httpx.Response(200, json=bundle())

    mock.route(host="fhir.example.org").mock(side_effect=slow_ok)
    templates = {**TEMPLATES, "conditions": "Condition?patient={{context.patientId}}"}
    t0 = time.perf_counter()
    res = await PrefetchResolver(client).resolve(_request(), templates)
    assert time.perf_counter() - t0 < 0.8  # three 0.3 s requests, not 0.9 s in a row
    assert res.problems == [] and res.pages_fetched == 3


# ---------------------------------------------------------------------------------------------- logging


async def test_logs_hold_no_token_no_patient_id(client, mock, caplog):
    mock.get(f"{BASE}/Patient/{PID}").respond(401, json=oo("token rejected"))
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).mock(side_effect=httpx.ReadTimeout)
    with caplog.at_level(logging.DEBUG, logger="cds_hooks"):
        res = await PrefetchResolver(client).resolve(_request(), TEMPLATES)
    assert res.problems
    assert caplog.records  # something was logged
    assert TOKEN not in caplog.text
    assert PID not in caplog.text
    summary = res.log_summary()
    assert PID not in str(summary) and TOKEN not in str(summary)
    assert summary["problems"] == 2 and summary["keys"] == 2


async def test_all_resources_dedupes(client):
    pre = {
        "patient": {"resourceType": "Patient", "id": PID},
        "observations": bundle(obs(1), {"resourceType": "Patient", "id": PID}, {"resourceType": "Basic"}),
    }
    res = await PrefetchResolver(client).resolve(_request(server=None, token=None, prefetch=pre), TEMPLATES)
    assert [r["resourceType"] for r in res.all_resources()] == ["Patient", "Observation", "Basic"]
    assert len(res.all_resources(dedupe=False)) == 4
    assert res.counts()["resources"] == 4
