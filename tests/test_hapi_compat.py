"""HAPI FHIR compatibility of `mbc-cds load`, `mbc-cds hook` and the FHIR-server fallback.

1. Against a real HAPI FHIR JPA server (tests/hapi-server, R4 on H2 in memory, started once per session by
   tests/hapi_fixture.py): every sample patient loaded with `mbc-cds load` (transaction Bundles, client ids),
   `mbc-cds hook` with and without prefetch giving the embedded evaluation's cards, HAPI's `_getpages` paging
   (its default 20 per page, and a small `_count`), server-assigned numeric ids, HAPI's OperationOutcome errors
   (an unknown patient, an unknown search parameter) and what HAPI does with each prefetch template's search
   parameters.
2. Faults put in front of that server (respx, with the real HAPI behind): a search HAPI has expired (its
   `_getpages` link pointed at a search id HAPI never issued: HAPI's own 410) and a server that requires a
   token, which this one does not (a recorded HAPI 401, tests/hapi_recorded/, see its README).
3. End to end against a second real FHIR server (tests/fhirserver, Medplum's in-memory FHIR router on node).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient

from app.bundles import bundle_resources
from app.cli import main
from app.cli.evaluate import evaluate_bundle
from app.samples import sample_bundle, sample_ids
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.models import HookRequest
from cds_hooks.urls import encode_request_url
from tests.conftest import NOW, SERVICE_URL
from tests.served_app import serve_app
from tests.test_integrator import rules_of

try:  # the local FHIR server fixture (node + Medplum); absent on machines without it
    from tests.fhir_server_fixture import local_fhir_server  # noqa: F401
except ImportError:
    HAVE_FHIR_SERVER_FIXTURE = False
else:
    HAVE_FHIR_SERVER_FIXTURE = True

RECORDED = Path(__file__).parent / "hapi_recorded"
HOOK_INSTANCE = "3f1e9b2c-5d7a-4c8e-9b1f-2a6d4e8c0f13"
FHIR_JSON = "application/fhir+json"
EXTRA_WEIGHTS = 25  # with the sample's own Observations more than HAPI's default page of 20
# a code no value set has (a test-only local system): the prefetch template's code filter must leave it out
OFF_FILTER_CODE = {"system": "http://mbc-cds.example.org/fhir/CodeSystem/test-only", "code": "not-in-any-value-set"}


def recorded_response(status: int, name: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=(RECORDED / name).read_bytes(),
                          headers={"content-type": "application/fhir+json;charset=UTF-8", **headers})


def hook_body(base: str, patient: str, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "fhirServer": base,
                            "context": {"patientId": patient, "userId": "Practitioner/example"}}
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "mbc-cds"}
    return body


def templates_of(client: TestClient) -> dict[str, str]:
    services = client.get("/cds-services").json()["services"]
    return dict(services[0]["prefetch"])


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    resp = httpx.get(url, headers={"Accept": FHIR_JSON}, timeout=60)
    return resp.status_code, resp.json()


# ----------------------------------------------------------------------------------------------------------
# data in the real HAPI server
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hapi(hapi_fhir_server: str) -> str:
    return hapi_fhir_server


@pytest.fixture(scope="module")
def loaded_samples(hapi: str) -> str:
    """`mbc-cds load` of every sample patient (dates shifted to now); its printed output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["load", "--fhir-server", hapi])
    assert code == 0, out.getvalue()
    return out.getvalue()


def as_server_assigned(bundle: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample's transaction rewritten the way most EHR feeds write: every entry a POST with a `urn:uuid:`
    fullUrl and no id, references to the urn, so HAPI assigns numeric ids and rewrites the references."""
    resources = bundle_resources(bundle) + extra
    urn = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in resources}

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (urn.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    entries = []
    for r in resources:
        body = rewrite(r)
        del body["id"]
        entries.append({"fullUrl": urn[f"{r['resourceType']}/{r['id']}"], "resource": body,
                        "request": {"method": "POST", "url": r["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def extra_weights(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Older body weights (the code of the sample's own), one a week further back than the oldest Observation:
    they leave the recent trend alone and push the patient's Observations past one HAPI page."""
    resources = bundle_resources(bundle)
    weight = next(r for r in resources if r["resourceType"] == "Observation"
                  and any(c.get("code") == "29463-7" for c in r["code"]["coding"]))
    oldest = min(datetime.fromisoformat(r["effectiveDateTime"].replace("Z", "+00:00")) for r in resources
                 if r["resourceType"] == "Observation" and "effectiveDateTime" in r)
    out = []
    for n in range(1, EXTRA_WEIGHTS + 1):
        obs = orjson.loads(orjson.dumps(weight))
        obs["id"] = f"extra-weight-{n}"
        obs["effectiveDateTime"] = (oldest - timedelta(weeks=n)).astimezone(UTC).isoformat().replace("+00:00", "Z")
        out.append(obs)
    off = orjson.loads(orjson.dumps(weight))
    off["id"] = "off-filter-1"
    off["code"] = {"coding": [OFF_FILTER_CODE]}
    return [*out, off]


@pytest.fixture(scope="module")
def paging_patient(hapi: str) -> tuple[str, dict[str, Any]]:
    """mbc-demo-01 at the tests' clock plus older weights, POSTed so that HAPI assigns numeric ids:
    (HAPI's patient id, the same data as a local Bundle with the sample's ids)."""
    bundle = sample_bundle("mbc-demo-01", now=NOW)
    extra = extra_weights(bundle)
    resp = httpx.post(hapi, content=orjson.dumps(as_server_assigned(bundle, extra)),
                      headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, timeout=120)
    assert resp.status_code == 200, resp.text
    locations = [e["response"]["location"] for e in resp.json()["entry"]]
    pid = next(loc.split("/")[1] for loc in locations if loc.startswith("Patient/"))
    assert pid.isdigit()
    local = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": r} for r in bundle_resources(bundle) + extra]}
    return pid, local


def forward_to(request: httpx.Request) -> httpx.Response:
    """The request answered by the real server, outside httpx (which respx is mocking)."""
    req = urllib.request.Request(str(request.url), headers={"Accept": FHIR_JSON}, method=request.method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - a loopback test server
            return httpx.Response(r.status, content=r.read(), headers={"content-type": r.headers["content-type"]})
    except urllib.error.HTTPError as err:
        return httpx.Response(err.code, content=err.read(), headers={"content-type": err.headers["content-type"]})


@contextlib.contextmanager
def in_front_of_hapi(handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[list[httpx.Request]]:
    """Every request the app sends to 127.0.0.1 goes through `handler` (recorded); TestClient's own calls to
    the app do not (they never reach httpx's network transports)."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").mock(side_effect=record)
        yield seen


# ----------------------------------------------------------------------------------------------------------
# load and hook, every sample patient
# ----------------------------------------------------------------------------------------------------------


def test_load_puts_every_sample_under_its_client_ids(hapi: str, loaded_samples: str) -> None:
    n = len(sample_ids())
    assert f"[{n}/{n}]" in loaded_samples and "failed" not in loaded_samples
    with httpx.Client(headers={"Accept": FHIR_JSON}, timeout=60) as http:
        for sid in sample_ids():
            for r in bundle_resources(sample_bundle(sid)):
                resp = http.get(f"{hapi}/{r['resourceType']}/{r['id']}")
                assert resp.status_code == 200, (sid, r["id"], resp.text)
                stored = resp.json()
                assert stored["id"] == r["id"] and stored["meta"]["versionId"]
                if "subject" in r:  # references kept as written (no rewriting to other ids)
                    assert stored["subject"]["reference"] == r["subject"]["reference"]


def test_hook_with_and_without_prefetch_gives_the_embedded_cards_for_every_sample(
        hapi: str, loaded_samples: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got: dict[str, list[str]] = {}
    with serve_app(tmp_path, require_jwt=False) as (base, _db):
        service = f"{base}/cds-services/mbc-palliative-care"
        for sid in sample_ids():
            now = datetime.now(UTC)
            expected = rules_of(evaluate_bundle(sample_bundle(sid, now=now), now=now))
            common = ["hook", "--service", service, "--fhir-server", hapi, "--patient", sid, "--json"]
            assert main(common) == 0, capsys.readouterr().err
            from_server = rules_of(json.loads(capsys.readouterr().out)["cards"])
            assert main([*common, "--prefetch"]) == 0, capsys.readouterr().err
            with_prefetch = rules_of(json.loads(capsys.readouterr().out)["cards"])
            assert from_server == expected, sid
            assert with_prefetch == expected, sid
            got[sid] = from_server
    assert "emergency-spinal-cord-compression" in got["mbc-demo-03"]
    assert {"mbc-overview", "referral-palliative-care"} <= set(got["mbc-demo-01"])
    assert got["mbc-demo-11"] == []  # no metastases: no cards
    assert not any("data-incomplete" in rules for rules in got.values())


# ----------------------------------------------------------------------------------------------------------
# the FHIR-server fallback: HAPI's paging and server-assigned ids
# ----------------------------------------------------------------------------------------------------------


def test_hook_reads_every_hapi_page_and_server_assigned_ids(client: TestClient, hapi: str,
                                                           paging_patient: tuple[str, dict[str, Any]]) -> None:
    pid, local = paging_patient
    expected = rules_of(evaluate_bundle(local, now=NOW))
    with in_front_of_hapi(forward_to) as seen:
        resp = client.post(SERVICE_URL, json=hook_body(hapi, pid))
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert rules_of(cards) == expected and "data-incomplete" not in expected

    # HAPI's default page is 20: the Observations come in two pages, the second through `_getpages`
    getpages = [r.url for r in seen if "_getpages" in r.url.params]
    assert len(getpages) == 1 and getpages[0].path == "/fhir" and getpages[0].params["_getpagesoffset"] == "20"
    assert all(r.headers["accept"] == FHIR_JSON for r in seen)
    overview = next(c for c in cards if c["source"]["topic"]["code"] == "mbc-overview")
    assert re.search(r"Condition/\d+", overview["detail"])  # HAPI's numeric ids survive as references


def resolve(hapi: str, patient: str, templates: dict[str, str], page_size: int | None) -> tuple[Any, list[str]]:
    import asyncio

    urls: list[str] = []

    async def record(request: httpx.Request) -> None:
        urls.append(str(request.url))

    async def run() -> Any:
        async with httpx.AsyncClient(timeout=60, event_hooks={"request": [record]}) as http:
            resolver = PrefetchResolver(http, timeout_total=60, page_size=page_size)
            return await resolver.resolve(HookRequest.model_validate(hook_body(hapi, patient)), templates)

    return asyncio.run(run()), urls


def test_fallback_with_a_small_count_follows_every_hapi_page(client: TestClient, hapi: str,
                                                             loaded_samples: str) -> None:
    templates = templates_of(client)
    whole, _ = resolve(hapi, "mbc-demo-01", templates, page_size=200)
    paged, urls = resolve(hapi, "mbc-demo-01", templates, page_size=2)
    assert not whole.problems and not paged.problems
    for key in templates:
        assert sorted(r["id"] for r in paged.resources[key]) == sorted(r["id"] for r in whole.resources[key]), key
    assert len(paged.resources["observations"]) > 2
    getpages = [u for u in urls if "_getpages=" in u]
    assert len(getpages) == paged.pages_fetched - len(templates) > 0
    assert all("_count=2" in u for u in getpages)  # HAPI keeps the page size in its paging links


def template_ids(resources: list[dict[str, Any]], template: str, pid: str) -> set[str]:
    """What a prefetch template should find, worked out locally from the loaded Bundle."""
    rtype, _, query = template.replace("{{context.patientId}}", pid).partition("?")
    if not query:
        return {pid}
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert set(params) <= {"patient", "status", "code"}, f"teach this test the parameters of {template}"
    found = set()
    for r in resources:
        ref = (r.get("subject") or r.get("patient") or {}).get("reference")
        if r["resourceType"] != rtype.split("/")[0] or ref != f"Patient/{params['patient']}":
            continue
        if "status" in params and r.get("status") != params["status"]:
            continue
        if "code" in params:
            codings = {f"{c.get('system')}|{c.get('code')}" for c in r.get("code", {}).get("coding", [])}
            if not codings & set(params["code"].split(",")):
                continue
        found.add(r["id"])
    return found


def test_hapi_answers_every_prefetch_template_as_the_service_expects(client: TestClient, hapi: str,
                                                                   loaded_samples: str) -> None:
    templates = templates_of(client)
    filtered_out = {"medicationRequests": 0}
    with httpx.Client(headers={"Accept": FHIR_JSON}, timeout=60) as http:
        for sid in sample_ids():
            resources = bundle_resources(sample_bundle(sid))
            for key, template in templates.items():
                rel = template.replace("{{context.patientId}}", sid)
                resp = http.get(encode_request_url(f"{hapi}/{rel}" + ("&_count=200" if "?" in rel else "")))
                assert resp.status_code == 200, (key, resp.text)
                doc = resp.json()
                if "?" not in rel:
                    assert doc["resourceType"] == "Patient" and doc["id"] == sid
                    continue
                assert doc["resourceType"] == "Bundle" and doc["type"] == "searchset", key
                assert not [lk for lk in doc.get("link", []) if lk["relation"] == "next"]
                got = {e["resource"]["id"] for e in doc.get("entry", [])}
                assert got == template_ids(resources, template, sid), (sid, key)
                if key in filtered_out:
                    rtype = rel.split("?")[0]
                    mine = [r for r in resources if r["resourceType"] == rtype]
                    filtered_out[key] += len(mine) - len(got)
    # the status filter did filter something on HAPI (otherwise the comparison above proves little)
    assert all(n > 0 for n in filtered_out.values()), filtered_out


def test_hapi_filters_observations_by_the_template_codes(client: TestClient, hapi: str,
                                                        paging_patient: tuple[str, dict[str, Any]]) -> None:
    pid, local = paging_patient
    observations = [e["resource"] for e in local["entry"] if e["resource"]["resourceType"] == "Observation"]
    template = templates_of(client)["observations"].replace("{{context.patientId}}", pid)
    _, filtered = get_json(encode_request_url(f"{hapi}/{template}&_count=200"))
    _, everything = get_json(f"{hapi}/Observation?patient={pid}&_count=200")
    assert everything["total"] == len(observations) and filtered["total"] == len(observations) - 1
    assert OFF_FILTER_CODE not in [c for e in filtered["entry"] for c in e["resource"]["code"]["coding"]]


# ----------------------------------------------------------------------------------------------------------
# HAPI's OperationOutcome errors
# ----------------------------------------------------------------------------------------------------------


def test_unknown_patient_on_hapi_says_what_could_not_be_read(client: TestClient, hapi: str) -> None:
    with in_front_of_hapi(forward_to) as seen:
        resp = client.post(SERVICE_URL, json=hook_body(hapi, "mbc-no-such-patient"))
    assert resp.status_code == 200, resp.text
    assert any(r.url.path.endswith("/Patient/mbc-no-such-patient") for r in seen)
    cards = resp.json()["cards"]
    assert rules_of(cards) == ["data-incomplete"]
    assert "Patient" in cards[0]["summary"] and "404" in cards[0]["summary"]


def test_unknown_search_parameter_is_hapis_400_with_its_diagnostics(hapi: str, loaded_samples: str) -> None:
    templates = {"conditions": "Condition?patient={{context.patientId}}&onset-year=2020",
                 "patient": "Patient/{{context.patientId}}"}
    result, _ = resolve(hapi, "mbc-demo-01", templates, page_size=None)
    [problem] = result.problems
    assert problem.key == "conditions" and problem.status == 400
    assert "HAPI-0524" in problem.detail and "onset-year" in problem.detail
    assert [r["id"] for r in result.resources["patient"]] == ["mbc-demo-01"]


# ----------------------------------------------------------------------------------------------------------
# what this HAPI cannot be made to do on demand: faults put in front of it
# ----------------------------------------------------------------------------------------------------------


def test_expired_hapi_search_keeps_the_first_page_and_says_what_is_missing(
        client: TestClient, hapi: str, paging_patient: tuple[str, dict[str, Any]]) -> None:
    """HAPI drops a search's cached results after a while, and its `_getpages` links then answer 410 Gone
    (HAPI-0417). This server keeps them for the session: the link is pointed at a search id it never issued,
    which HAPI answers exactly as an expired one."""
    pid, _local = paging_patient

    def expired(request: httpx.Request) -> httpx.Response:
        if "_getpages" in request.url.params:
            request = httpx.Request("GET", request.url.copy_set_param("_getpages", str(uuid.uuid4())))
        return forward_to(request)

    with in_front_of_hapi(expired) as seen:
        resp = client.post(SERVICE_URL, json=hook_body(hapi, pid))
    assert resp.status_code == 200
    cards = resp.json()["cards"]
    assert any("_getpages" in r.url.params for r in seen)
    assert "mbc-overview" in rules_of(cards)  # what the first pages gave is used
    incomplete = [c for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
    assert incomplete and "Observation" in incomplete[0]["summary"] and "410" in incomplete[0]["summary"]


def test_hapi_behind_a_token_check_gets_the_token_and_its_401_is_reported(
        client: TestClient, hapi: str, paging_patient: tuple[str, dict[str, Any]]) -> None:
    """The test server has no security: HAPI's 401 (recorded) comes from a check put in front of it."""
    pid, local = paging_patient

    def token_check(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Bearer good":
            return recorded_response(401, "unauthorized-401.json", **{"www-authenticate": 'Bearer realm="hapi"'})
        return forward_to(request)

    with in_front_of_hapi(token_check) as seen:
        resp = client.post(SERVICE_URL, json=hook_body(hapi, pid, token="bad"))
    assert resp.status_code == 200
    cards = resp.json()["cards"]
    assert rules_of(cards) == ["data-incomplete"] and "401" in cards[0]["detail"]
    assert seen and {r.headers["authorization"] for r in seen} == {"Bearer bad"}

    with in_front_of_hapi(token_check) as seen:
        ok = client.post(SERVICE_URL, json=hook_body(hapi, pid, token="good"))
    assert rules_of(ok.json()["cards"]) == rules_of(evaluate_bundle(local, now=NOW))
    assert {r.headers["authorization"] for r in seen} == {"Bearer good"}


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
