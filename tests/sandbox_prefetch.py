"""Prefetch as the CDS Hooks Sandbox builds it (cds-hooks/sandbox, src/retrieve-data-helpers/service-exchange.js):
one GET `{fhirServer}/{filled template}` per key; the answer as it came (a searchset Bundle is the FIRST page,
with its `next` link); a key whose GET failed is simply left out; never a `null` value."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

PAGE_SIZE = 20


def fill(template: str, patient_id: str) -> str:
    return re.sub(r"\{\{\s*context\.patientId\s*\}\}", patient_id, template)


def sandbox_prefetch(base: str, templates: dict[str, str], patient_id: str) -> dict[str, Any]:
    """Read each key from a live FHIR server exactly as the Sandbox does."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=10) as http:
        for key, template in templates.items():
            resp = http.get(f"{base}/{fill(template, patient_id)}", headers={"Accept": "application/json+fhir"})
            if resp.status_code < 400 and resp.content and resp.json():
                out[key] = resp.json()
    return out


class PagedFhir:
    """A tiny FHIR search answerer for respx: resources by type, pages of PAGE_SIZE with absolute `self` and
    `next` links (`_offset`), like tests/fhirserver does. Patient reads by id; a missing Patient is a 404."""

    def __init__(self, base: str, resources: list[dict[str, Any]]) -> None:
        self.base = base
        self.resources = resources
        self.requests: list[httpx.Request] = []

    def page(self, rtype: str, query: str, offset: int) -> dict[str, Any]:
        matches = [r for r in self.resources if r.get("resourceType") == rtype]
        params = {k: v[0] for k, v in parse_qs(query).items() if k not in ("_count", "_offset")}
        rest = "&".join(f"{k}={v}" for k, v in params.items())

        def url(at: int) -> str:
            return f"{self.base}/{rtype}?{rest}&_count={PAGE_SIZE}&_offset={at}"

        chunk = matches[offset: offset + PAGE_SIZE]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                                  "link": [{"relation": "self", "url": url(offset)}]}
        if offset + PAGE_SIZE < len(matches):
            bundle["link"].append({"relation": "next", "url": url(offset + PAGE_SIZE)})
        if chunk:
            bundle["entry"] = [{"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r,
                                "search": {"mode": "match"}} for r in chunk]
        return bundle

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = urlsplit(str(request.url))
        path = parts.path[len(urlsplit(self.base).path):].strip("/").split("/")
        if len(path) == 2:
            found = [r for r in self.resources if r.get("resourceType") == path[0] and r.get("id") == path[1]]
            if not found:
                return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found", "diagnostics": "not found"}]})
            return httpx.Response(200, json=found[0])
        offset = int(parse_qs(parts.query).get("_offset", ["0"])[0])
        return httpx.Response(200, json=self.page(path[0], parts.query, offset))

    def prefetch(self, templates: dict[str, str], patient_id: str) -> dict[str, Any]:
        """What the Sandbox would send, built without HTTP."""
        out: dict[str, Any] = {}
        for key, template in templates.items():
            resp = self(httpx.Request("GET", f"{self.base}/{fill(template, patient_id)}"))
            if resp.status_code < 400:
                out[key] = resp.json()
        self.requests.clear()
        return out
