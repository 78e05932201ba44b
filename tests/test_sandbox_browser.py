"""The CDS Hooks Sandbox's browser flow, replayed in headless Chromium from a third origin: discovery and hook
calls to the service with Sandbox-shaped JWTs (CORS + JWT on), prefetch read from the local FHIR server the way
the Sandbox reads it (CORS on the FHIR side: first pages only), cards back. The real Sandbox build is not run
here (its sources cannot be fetched on this machine); the steps follow cds-hooks/sandbox
src/retrieve-data-helpers/service-exchange.js."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fhir_server_fixture import local_fhir_server  # noqa: F401
from tests.served_app import serve_app
from tests.test_prefetch_paging import PID, paged_patient
from tests.test_sandbox_client import public_jwk, sandbox_token
from tests.test_viewer_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python")

# What the Sandbox does, as a page script: GET discovery, GET each prefetch template from the FHIR server
# (keeping only answers that came back; the first page of a search as it is), POST the hook.
SANDBOX_JS = """
async ({discovery, service, fhir, patient, tokens}) => {
  const disc = await fetch(discovery, {headers: {Accept: 'application/json', Authorization: 'Bearer ' + tokens[0]}});
  if (!disc.ok) return {error: 'discovery ' + disc.status};
  const svc = (await disc.json()).services.find((s) => service.endsWith('/' + s.id));
  const prefetch = {};
  for (const [key, template] of Object.entries(svc.prefetch)) {
    const url = fhir + '/' + template.replace(/{{\\s*context\\.patientId\\s*}}/g, patient);
    try {
      // with an access token the Sandbox sends it: a non-simple header, so the browser preflights
      const r = await fetch(url, {headers: {Accept: 'application/json+fhir', Authorization: 'Bearer fhir-token'}});
      if (r.ok) { const data = await r.json(); if (Object.keys(data).length) prefetch[key] = data; }
    } catch (e) { /* best effort, like the Sandbox: the key is left out */ }
  }
  const body = {hookInstance: crypto.randomUUID(), hook: 'patient-view', fhirServer: fhir,
                fhirAuthorization: {access_token: 'fhir-token', token_type: 'Bearer', expires_in: 300,
                                    scope: 'patient/*.read', subject: 'sandbox'},
                context: {patientId: patient, userId: 'Practitioner/example'}, prefetch};
  const resp = await fetch(service, {method: 'POST', body: JSON.stringify(body),
    headers: {Accept: 'application/json', 'Content-Type': 'application/json', Authorization: 'Bearer ' + tokens[1]}});
  const observations = prefetch.observations || {};
  return {status: resp.status, body: await resp.json(),
          sentObservations: (observations.entry || []).length,
          nextLink: (observations.link || []).some((l) => l.relation === 'next')};
}
"""


class _Blank(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<!doctype html><title>ehr</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ehr_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sandbox_flow_in_a_browser_pages_through_and_verifies_the_jwt(
        tmp_path: Path, ehr_origin: str, local_fhir_server: str) -> None:  # noqa: F811
    with httpx.Client(timeout=30) as http:
        for r in paged_patient(datetime.now(UTC)):
            assert http.put(f"{local_fhir_server}/{r['resourceType']}/{r['id']}", json=r).status_code in (200, 201)
    key = ec.generate_private_key(ec.SECP384R1())
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"iss": "https://sandbox.cds-hooks.org", "jwks": {"keys": [public_jwk(key)]}}]))
    # JWT on, as in production: the (loopback) FHIR server must be listed to be read
    with serve_app(tmp_path, require_jwt=True, clients_file=str(clients),
                   allowed_fhir_servers=local_fhir_server) as (base, _db), \
            sync_api.sync_playwright() as p:
        discovery, service = f"{base}/cds-services", f"{base}/cds-services/mbc-palliative-care"
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(ehr_origin + "/")
            out = page.evaluate(SANDBOX_JS, {
                "discovery": discovery, "service": service, "fhir": local_fhir_server, "patient": PID,
                "tokens": [sandbox_token(key, discovery), sandbox_token(key, service)]})
        finally:
            browser.close()
    assert out.get("status") == 200, out
    assert out["nextLink"] and out["sentObservations"] == 20  # the Sandbox sent a first page
    rules = [c["source"]["topic"]["code"] for c in out["body"]["cards"]]
    assert {"pain-ladder-step-up", "bone-pain-radiotherapy"} <= set(rules), rules
    assert "data-incomplete" not in rules
