"""Paged prefetch (contract v2): a prefetch Bundle with a `next` link is a first page. The rest is read from
fhirServer under the rules of the service's own searches; without a server the type is incomplete, named on
data-incomplete, and no absence is claimed. The 34-Observation patient: pain 8/10 is on page 2."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.data_requirements import prefetch_templates
from app.main import create_app
from app.samples import sample_bundle
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.models import HookRequest
from tests.conftest import SERVICE_URL, make_settings
from tests.fhir_server_fixture import local_fhir_server  # noqa: F401
from tests.sandbox_prefetch import PAGE_SIZE, PagedFhir, sandbox_prefetch

FHIR = "https://ehr.example.org/fhir"
TOKEN = "paging-access-token"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PID = "mbc-demo-01"
# Cards that say an Observation is absent: never when the Observations could not be read in full.
ABSENCE_RULES = {"pain-assessment-due", "distress-screening-due", "assessment-due", "acp-acute", "acp-stable"}


# ------------------------------------------------------------------------------------- resolver level


def request(prefetch: dict[str, Any], server: str | None = FHIR) -> HookRequest:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": "a1b2c3d4-0000-4000-8000-000000000001",
                            "context": {"patientId": "p1", "userId": "Practitioner/1"}, "prefetch": prefetch}
    if server:
        body["fhirServer"] = server
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "mbc-cds"}
    return HookRequest.model_validate(body)


def observations(n: int) -> list[dict[str, Any]]:
    return [{"resourceType": "Observation", "id": f"o{i}"} for i in range(n)]


TEMPLATES = {"observations": "Observation?patient={{context.patientId}}"}


async def resolve(prefetch: dict[str, Any], server: str | None = FHIR, **kw: Any):
    async with httpx.AsyncClient() as http:
        return await PrefetchResolver(http, **kw).resolve(request(prefetch, server), TEMPLATES)


def first_page(fhir: PagedFhir) -> dict[str, Any]:
    return fhir.prefetch(TEMPLATES, "p1")


async def test_the_rest_of_a_first_page_is_read_with_the_token() -> None:
    fhir = PagedFhir(FHIR, observations(45))
    prefetch = first_page(fhir)
    assert len(prefetch["observations"]["entry"]) == PAGE_SIZE
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        result = await resolve(prefetch)
    assert [r["id"] for r in result.resources["observations"]] == [f"o{i}" for i in range(45)]
    assert result.problems == [] and result.pages_fetched == 2
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fhir.requests)


async def test_a_first_page_without_a_server_is_incomplete() -> None:
    result = await resolve(first_page(PagedFhir(FHIR, observations(34))), server=None)
    assert len(result.resources["observations"]) == PAGE_SIZE
    assert [(p.key, p.kind) for p in result.problems] == [("observations", "incomplete")]


async def test_a_bundle_without_next_is_the_whole_answer() -> None:
    result = await resolve(first_page(PagedFhir(FHIR, observations(7))), server=None)
    assert len(result.resources["observations"]) == 7 and result.problems == []


async def test_a_next_link_to_another_origin_is_read_from_fhir_server_only() -> None:
    fhir = PagedFhir(FHIR, observations(30))
    prefetch = first_page(fhir)
    nxt = prefetch["observations"]["link"][1]
    nxt["url"] = nxt["url"].replace("https://ehr.example.org", "https://evil.example.net")
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.get(url__startswith="https://evil.example.net").mock(return_value=httpx.Response(500))
        mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        result = await resolve(prefetch)
    assert not evil.called and len(result.resources["observations"]) == 30 and result.problems == []


async def test_the_sent_page_counts_against_the_page_cap() -> None:
    fhir = PagedFhir(FHIR, observations(65))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        result = await resolve(first_page(fhir), max_pages=2)
    assert [p.kind for p in result.problems] == ["too-many-pages"]
    assert len(result.resources["observations"]) == 40 and len(fhir.requests) == 1


async def test_a_next_link_back_to_the_sent_page_is_a_loop() -> None:
    fhir = PagedFhir(FHIR, observations(30))
    prefetch = first_page(fhir)
    links = prefetch["observations"]["link"]
    links[1]["url"] = links[0]["url"]
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        result = await resolve(prefetch)
    assert [p.kind for p in result.problems] == ["paging-loop"] and not route.called
    assert len(result.resources["observations"]) == PAGE_SIZE


async def test_a_failing_second_page_keeps_the_first_and_says_so() -> None:
    fhir = PagedFhir(FHIR, observations(30))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(return_value=httpx.Response(503))
        result = await resolve(first_page(fhir))
    assert [(p.kind, p.status) for p in result.problems] == [("http", 503)]
    assert len(result.resources["observations"]) == PAGE_SIZE


async def test_the_rest_is_read_under_the_one_deadline() -> None:
    fhir = PagedFhir(FHIR, observations(30))

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=hang)
        result = await resolve(first_page(fhir), timeout_total=0.3)
    assert [p.kind for p in result.problems] == ["timeout"]
    assert len(result.resources["observations"]) == PAGE_SIZE


# ------------------------------------------------------------------ the 34-Observation patient, whole hook


def paged_patient(now: datetime = NOW) -> list[dict[str, Any]]:
    """mbc-demo-01 (pain 8/10 on tramadol, bone and new liver metastases) plus 20 old SpO2 readings written
    first, so that its own 14 Observations, pain 8/10 among them, come on page 2 of 34."""
    resources = [e["resource"] for e in sample_bundle(PID, now=now)["entry"]]
    filler = [{"resourceType": "Observation", "id": f"{PID}-spo2-old-{i}", "status": "final",
               "subject": {"reference": f"Patient/{PID}"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
               "effectiveDateTime": (now - timedelta(days=400 + 7 * i)).isoformat(),
               "valueQuantity": {"value": 97, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
              for i in range(20)]
    others = [r for r in resources if r["resourceType"] != "Observation"]
    own = [r for r in resources if r["resourceType"] == "Observation"]
    return others + filler + own


def is_pain_8(resource: dict[str, Any]) -> bool:
    codes = {c.get("code") for c in resource.get("code", {}).get("coding", [])}
    return "72514-3" in codes and resource.get("valueQuantity", {}).get("value") == 8


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path_factory.mktemp("paging")))
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        yield c


def templates(client: TestClient) -> dict[str, str]:
    return prefetch_templates(client.app.state.runtime.terminology)  # type: ignore[attr-defined]


def hook(client: TestClient, prefetch: dict[str, Any], server: str | None, patient_id: str = PID) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": "5a1d0c3e-7f00-4b00-9000-000000000034",
                            "context": {"patientId": patient_id, "userId": "Practitioner/1"}, "prefetch": prefetch}
    if server:
        body["fhirServer"] = server
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "mbc-cds"}
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def rules(doc: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in doc["cards"]]


def complete_prefetch(resources: list[dict[str, Any]], client: TestClient) -> dict[str, Any]:
    fhir = PagedFhir(FHIR, resources)
    out = {}
    for key, template in templates(client).items():
        rtype = template.split("?")[0].split("/")[0]
        items = [r for r in resources if r["resourceType"] == rtype]
        out[key] = items[0] if key == "patient" else {"resourceType": "Bundle", "type": "searchset",
                                                      "entry": [{"resource": r} for r in items]}
    assert fhir.resources
    return out


def assert_same_cards_as_complete(client: TestClient, doc: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    complete = hook(client, complete_prefetch(resources, client), None)
    assert rules(doc) == rules(complete)
    assert [c["summary"] for c in doc["cards"]] == [c["summary"] for c in complete["cards"]]
    assert {"pain-ladder-step-up", "bone-pain-radiotherapy"} <= set(rules(doc)), rules(doc)
    assert "data-incomplete" not in rules(doc)


def assert_incomplete_without_absence_claims(doc: dict[str, Any]) -> None:
    fired = rules(doc)
    assert "data-incomplete" in fired, fired
    assert not ABSENCE_RULES & set(fired), fired
    card = next(c for c in doc["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert "Observation" in card["summary"] + card["detail"] and len(card["summary"]) < 140
    text = " ".join(c["summary"] + " " + c.get("detail", "") for c in doc["cards"])
    for claim in ("no 0-10 pain score", "no pain score", "not recorded", "not on record: code status", "no distress",
                  "no acute-phase signal", "no symptom or performance assessment"):
        assert claim not in text, claim


def test_sandbox_first_pages_with_a_server_give_the_complete_cards(client: TestClient) -> None:
    resources = paged_patient()
    fhir = PagedFhir(FHIR, resources)
    prefetch = fhir.prefetch(templates(client), PID)
    page1 = prefetch["observations"]
    assert page1["total"] == 34 and any(link["relation"] == "next" for link in page1["link"])
    assert not any(is_pain_8(e["resource"]) for e in page1["entry"])
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir)
        doc = hook(client, prefetch, FHIR)
    assert len(fhir.requests) == 1 and "_offset=20" in str(fhir.requests[0].url)
    assert_same_cards_as_complete(client, doc, resources)


def test_sandbox_first_pages_without_a_server_claim_no_absence(client: TestClient) -> None:
    prefetch = PagedFhir(FHIR, paged_patient()).prefetch(templates(client), PID)
    doc = hook(client, prefetch, None)
    assert_incomplete_without_absence_claims(doc)
    assert "pain-ladder-step-up" not in rules(doc)  # the pain score is unread: no treatment suggestion


def test_local_fhir_server_first_pages(client: TestClient, local_fhir_server: str) -> None:  # noqa: F811
    resources = paged_patient()
    with httpx.Client(timeout=30) as http:
        for r in resources:  # one by one, in order, so that the filler comes first in search results
            resp = http.put(f"{local_fhir_server}/{r['resourceType']}/{r['id']}", json=r,
                            headers={"Content-Type": "application/fhir+json"})
            assert resp.status_code in (200, 201), resp.text
    prefetch = sandbox_prefetch(local_fhir_server, templates(client), PID)
    page1 = prefetch["observations"]
    assert any(link["relation"] == "next" for link in page1["link"]), page1.get("total")
    assert not any(is_pain_8(e["resource"]) for e in page1["entry"]), "pain 8/10 should be on page 2"
    assert_same_cards_as_complete(client, hook(client, prefetch, local_fhir_server), resources)
    assert_incomplete_without_absence_claims(hook(client, prefetch, None))


def test_a_paged_medication_list_without_a_server_claims_no_missing_laxative(client: TestClient) -> None:
    resources = paged_patient()
    prefetch = complete_prefetch(resources, client)
    assert "opioid-laxative" in rules(hook(client, prefetch, None))  # tramadol, no laxative on record
    prefetch["medicationRequests"]["link"] = [
        {"relation": "self", "url": f"{FHIR}/MedicationRequest?patient={PID}&status=active&_count=2"},
        {"relation": "next", "url": f"{FHIR}/MedicationRequest?patient={PID}&status=active&_count=2&_offset=2"}]
    doc = hook(client, prefetch, None)
    assert "opioid-laxative" not in rules(doc) and "pain-ladder-step-up" not in rules(doc)
    card = next(c for c in doc["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert "MedicationRequest" in card["summary"] + card["detail"]


def test_a_stable_looking_record_read_in_part_claims_no_absent_acute_signal(client: TestClient) -> None:
    resources = [e["resource"] for e in sample_bundle("mbc-demo-02", now=NOW)["entry"]]
    prefetch = complete_prefetch(resources, client)
    overview = next(c for c in hook(client, prefetch, None, "mbc-demo-02")["cards"]
                    if c["source"]["topic"]["code"] == "mbc-overview")
    assert "no acute-phase signal" in overview["detail"]  # the complete record: a real finding
    prefetch["observations"]["link"] = [{"relation": "next", "url": f"{FHIR}/Observation?_offset=20"}]
    doc = hook(client, prefetch, None, "mbc-demo-02")
    overview = next(c for c in doc["cards"] if c["source"]["topic"]["code"] == "mbc-overview")
    assert "no acute-phase signal" not in overview["detail"]
    assert "Observation could not be read in full" in overview["detail"]
    assert_incomplete_without_absence_claims(doc)
