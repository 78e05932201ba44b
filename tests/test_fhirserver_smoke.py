"""Smoke test of the local FHIR server: transaction load of the samples, reads, search with paging."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from app.samples import list_samples, sample_bundle
from tests.fhir_server_fixture import local_fhir_server  # noqa: F401  (pytest fixture)

PATIENT = "mbc-demo-01"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def client(local_fhir_server: str):  # noqa: F811
    with httpx.Client(base_url=local_fhir_server, headers=FHIR_JSON, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def loaded(client: httpx.Client) -> dict:
    bundle = sample_bundle(PATIENT, now=datetime.now(UTC))
    response = client.post("/", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(bundle["entry"])
    for entry in body["entry"]:
        assert entry["response"]["status"].startswith(("200", "201")), entry["response"]
    return bundle


def _ids(bundle: dict, resource_type: str) -> set[str]:
    return {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type}


def _follow(client: httpx.Client, url: str, max_pages: int = 50) -> tuple[list[dict], list[dict]]:
    """All pages of a search, following next links: (pages, resources)."""
    pages: list[dict] = []
    resources: list[dict] = []
    seen_urls = set()
    while url:
        assert url not in seen_urls, f"paging loop at {url}"
        seen_urls.add(url)
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["resourceType"] == "Bundle" and page["type"] == "searchset"
        pages.append(page)
        resources.extend(e["resource"] for e in page.get("entry", []))
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
        assert len(pages) <= max_pages
    return pages, resources


def test_read_patient_after_transaction(client: httpx.Client, loaded: dict) -> None:
    response = client.get(f"/Patient/{PATIENT}")
    assert response.status_code == 200
    assert response.json()["name"][0]["family"] == "Holloway"
    assert client.get("/Patient/does-not-exist").status_code == 404
    metadata = client.get("/metadata")
    assert metadata.status_code == 200 and metadata.json()["fhirVersion"] == "4.0.1"


def test_condition_search_by_patient(client: httpx.Client, loaded: dict) -> None:
    pages, resources = _follow(client, f"/Condition?patient={PATIENT}")
    assert len(pages) == 1
    assert {r["id"] for r in resources} == _ids(loaded, "Condition")
    assert pages[0]["total"] == len(resources)
    assert all(e["fullUrl"].endswith(f"/Condition/{e['resource']['id']}") for e in pages[0]["entry"])


def test_observation_search_pages_with_next_links(client: httpx.Client, loaded: dict) -> None:
    expected = _ids(loaded, "Observation")
    assert len(expected) > 10
    pages, resources = _follow(client, f"/Observation?patient={PATIENT}&_count=5")
    assert len(pages) == -(-len(expected) // 5)
    assert all(len(p.get("entry", [])) <= 5 for p in pages[:-1])
    assert all(len(p["entry"]) == 5 for p in pages[:-1])
    ids = [r["id"] for r in resources]
    assert len(ids) == len(set(ids)), "a resource appeared on two pages"
    assert set(ids) == expected
    assert not any(link["relation"] == "next" for link in pages[-1]["link"])
    assert all(p["total"] == len(expected) for p in pages)


def test_token_search_and_reference_forms(client: httpx.Client, loaded: dict) -> None:
    pain = client.get("/Observation", params={"subject": f"Patient/{PATIENT}",
                                              "code": "http://loinc.org|72514-3"}).json()
    assert [e["resource"]["valueInteger"] for e in pain["entry"]]
    assert all(e["resource"]["code"]["coding"][0]["code"] == "72514-3" for e in pain["entry"])
    assert client.get("/Observation", params={"_count": "x"}).status_code == 400


def test_reload_is_idempotent_and_default_page_size_is_20(client: httpx.Client, loaded: dict) -> None:
    now = datetime.now(UTC)
    for sample in list_samples(now=now):
        response = client.post("/", json=sample["bundle"])
        assert response.status_code == 200, (sample["id"], response.text)
    conditions = client.get(f"/Condition?patient={PATIENT}").json()
    assert conditions["total"] == len(_ids(loaded, "Condition"))

    first = client.get("/Observation").json()
    assert first["total"] >= sum(len(_ids(s["bundle"], "Observation")) for s in list_samples())
    assert len(first["entry"]) == 20
    pages, resources = _follow(client, "/Observation")
    assert len(resources) == first["total"]
    assert len({r["id"] for r in resources}) == first["total"]
