"""The one FHIR pager (cds_hooks/paging.py): next links resolved against the base and followed only while they
stay under it, in the async prefetch resolver and in the synchronous reader `mbc-cds hook --prefetch` uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from app.cli import main
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.models import HookRequest
from cds_hooks.paging import (
    FhirReadError,
    PageWalk,
    PagingStop,
    all_diagnostics,
    first_diagnostics,
    read_all_pages,
    resolve_link,
    under_base,
)

BASE = "https://fhir.example.org/r4"
PID = "p1"
SEARCH = f"Observation?patient={PID}"
SERVICE = "http://cds.example.org/cds-services/mbc-palliative-care"

# (next link on page 1, the URL read for page 2)
UNDER_BASE = [
    (f"{BASE}/Observation?patient={PID}&page=2", f"{BASE}/Observation?patient={PID}&page=2"),
    ("?_getpages=a&page=2", f"{BASE}?_getpages=a&page=2"),
    ("/r4?_getpages=a&page=2", f"{BASE}?_getpages=a&page=2"),
    ("http://inside-hapi:8080/r4?_getpages=a&page=2", f"{BASE}?_getpages=a&page=2"),  # re-based onto the origin
]
# next links that lead outside the base: never read, whatever the transport
OUTSIDE_BASE = [
    "https://fhir.example.org/admin/Observation?page=2",
    "/r4/../admin?page=2",
    "/r4/%2e%2e/admin?page=2",
    "/r4x?page=2",
    "http://inside-hapi:8080/other?page=2",
]


def page(resource_id: str, next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 2,
                              "entry": [{"resource": {"resourceType": "Observation", "id": resource_id}}]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def request() -> HookRequest:
    return HookRequest.model_validate({"hook": "patient-view", "hookInstance": "h", "fhirServer": BASE,
                                       "context": {"patientId": PID, "userId": "Practitioner/u"}})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def _serve(mock: respx.MockRouter, link: str) -> respx.Route:
    """Page 1 at the search URL with `link` as next; every other GET answers page 2 (and is recorded)."""
    mock.get(f"{BASE}/Observation", params__eq={"patient": PID}).respond(200, json=page("o1", link))
    return mock.get(url__regex=r".*").respond(200, json=page("o2"))


# -- the pure pieces ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("link", "expected"), UNDER_BASE)
def test_links_resolve_against_the_base_and_stay_under_it(link: str, expected: str) -> None:
    resolved = resolve_link(BASE, link)
    assert resolved == expected and under_base(BASE, resolved)


@pytest.mark.parametrize("link", OUTSIDE_BASE)
def test_a_walk_refuses_links_outside_the_base(link: str) -> None:
    walk = PageWalk(BASE, max_pages=5)
    walk.admit(f"{BASE}/{SEARCH}")
    walk.pages = 1
    with pytest.raises(PagingStop) as stop:
        walk.next_url(page("o1", link))
    assert stop.value.kind == "refused-url"


def test_a_walk_stops_at_loops_and_at_the_page_cap() -> None:
    walk = PageWalk(BASE, max_pages=2)
    first = walk.admit(f"{BASE}/{SEARCH}")
    walk.pages = 1
    with pytest.raises(PagingStop) as loop:
        walk.next_url(page("o1", first))
    assert loop.value.kind == "paging-loop"
    assert walk.next_url(page("o1", "?page=2")) == f"{BASE}?page=2"
    walk.pages = 2
    with pytest.raises(PagingStop) as cap:
        walk.next_url(page("o2", "?page=3"))
    assert cap.value.kind == "too-many-pages"


def test_operation_outcome_words_short_for_logs_and_whole_for_the_command_line() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "bad\nsearch " + "x" * 300},
        {"severity": "warning", "code": "informational", "details": {"text": "second"}},
        {"severity": "information", "code": "not-found"}]}
    assert first_diagnostics(outcome) == ("bad search " + "x" * 300)[:200]
    assert all_diagnostics(outcome) == f"error: bad search {'x' * 300}; warning: second; information: not-found"
    assert all_diagnostics({"resourceType": "Bundle"}) == ""


# -- the async resolver -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("link", "expected"), UNDER_BASE)
async def test_the_resolver_follows_next_links_under_the_base(link: str, expected: str, client: httpx.AsyncClient,
                                                              mock: respx.MockRouter) -> None:
    rest = _serve(mock, link)
    res = await PrefetchResolver(client).resolve(request(), {"observations": SEARCH})
    assert res.problems == []
    assert [r["id"] for r in res.resources["observations"]] == ["o1", "o2"]
    assert str(rest.calls.last.request.url) == expected


@pytest.mark.parametrize("link", OUTSIDE_BASE)
async def test_the_resolver_refuses_next_links_outside_the_base(link: str, client: httpx.AsyncClient,
                                                                mock: respx.MockRouter) -> None:
    rest = _serve(mock, link)
    res = await PrefetchResolver(client).resolve(request(), {"observations": SEARCH})
    assert not rest.called
    assert [(p.key, p.kind) for p in res.problems] == [("observations", "refused-url")]
    assert [r["id"] for r in res.resources["observations"]] == ["o1"]  # what was read is kept


# -- the sync reader and `mbc-cds hook --prefetch` ------------------------------------------------------------

@pytest.mark.parametrize(("link", "expected"), UNDER_BASE)
def test_the_sync_reader_follows_next_links_under_the_base(link: str, expected: str,
                                                           mock: respx.MockRouter) -> None:
    rest = _serve(mock, link)
    with httpx.Client() as http:
        bundle = read_all_pages(http, BASE, SEARCH, "tok")
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o1", "o2"] and bundle["total"] == 2
    assert str(rest.calls.last.request.url) == expected
    assert rest.calls.last.request.headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize("link", OUTSIDE_BASE)
def test_the_sync_reader_refuses_next_links_outside_the_base(link: str, mock: respx.MockRouter) -> None:
    rest = _serve(mock, link)
    with httpx.Client() as http, pytest.raises(FhirReadError, match="outside the FHIR server base"):
        read_all_pages(http, BASE, SEARCH, "tok")
    assert not rest.called


def test_hook_prefetch_leaves_out_a_key_whose_paging_leaves_the_base(mock: respx.MockRouter,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    discovery = {"services": [{"id": "mbc-palliative-care", "hook": "patient-view", "description": "d",
                               "prefetch": {"patient": "Patient/{{context.patientId}}",
                                            "observations": "Observation?patient={{context.patientId}}"}}]}
    mock.get("http://cds.example.org/cds-services").respond(200, json=discovery)
    mock.get(f"{BASE}/Patient/{PID}").respond(200, json={"resourceType": "Patient", "id": PID})
    service = mock.post(SERVICE).respond(200, json={"cards": []})
    rest = _serve(mock, OUTSIDE_BASE[0])
    assert main(["hook", "--service", SERVICE, "--fhir-server", BASE, "--patient", PID, "--prefetch"]) == 0
    assert not rest.called
    body = orjson.loads(service.calls.last.request.content)
    assert set(body["prefetch"]) == {"patient"}  # left for the service to read itself
    assert "prefetch observations: GET Observation?patient=p1: link outside the FHIR server base" in \
        capsys.readouterr().err
