"""Request URLs strict servers accept: `|` in token searches is sent as %7C (Tomcat, which HAPI FHIR runs in,
answers an unencoded `|` with a bare HTML 400)."""

from __future__ import annotations

import asyncio

import httpx
import respx
from hypothesis import given
from hypothesis import strategies as st

from cds_hooks.fallback import PrefetchResolver
from cds_hooks.models import HookRequest
from cds_hooks.urls import encode_request_url

BASE = "http://fhir.example.org/fhir"


def test_token_searches_are_percent_encoded() -> None:
    url = f"{BASE}/Observation?patient=p1&code=http://loinc.org|29463-7,http://snomed.info/sct|277208005"
    assert encode_request_url(url) == (f"{BASE}/Observation?patient=p1"
                                       "&code=http://loinc.org%7C29463-7,http://snomed.info/sct%7C277208005")


def test_urls_already_valid_are_unchanged() -> None:
    for url in (f"{BASE}?_getpages=0b1c-2d&_getpagesoffset=20&_count=20&_bundletype=searchset",
                f"{BASE}/Observation?code=http%3A%2F%2Floinc.org%7C29463-7&date=ge2026-01-01T00:00:00+01:00",
                f"{BASE}/Patient/mbc-demo-01", "https://hapi.fhir.org/baseR4/Condition?patient=592817"):
        assert encode_request_url(url) == url


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_encoding_is_idempotent_and_leaves_no_forbidden_character(value: str) -> None:
    once = encode_request_url(f"{BASE}/Observation?code={value}")
    assert encode_request_url(once) == once
    assert not set(once) & set(' "<>\\^`{|}'), once


@respx.mock(assert_all_mocked=True)
def test_the_fallback_sends_the_pipe_encoded(respx_mock: respx.MockRouter) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})

    respx_mock.get(url__startswith=BASE).mock(side_effect=answer)
    request = HookRequest.model_validate({
        "hook": "patient-view", "hookInstance": "f7c2a3d4-1b2c-4d5e-8f90-a1b2c3d4e5f6", "fhirServer": BASE,
        "context": {"patientId": "p1", "userId": "Practitioner/example"}})

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            await PrefetchResolver(http).resolve(
                request, {"observations": "Observation?patient={{context.patientId}}&code=http://loinc.org|29463-7"})

    asyncio.run(run())
    assert seen == ["/fhir/Observation?patient=p1&code=http://loinc.org%7C29463-7"]
