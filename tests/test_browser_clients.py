"""Browser clients: the local FHIR server answers CORS (preflight and headers) so that the CDS Hooks Sandbox can
read from it, and `mbc-cds demo` prints a ready Sandbox URL (serviceDiscoveryURL, fhirServiceUrl, patientId)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.cli import main
from app.cli.demo import sandbox_launch_url
from tests.fhir_server_fixture import local_fhir_server  # noqa: F401

SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"


def test_the_local_fhir_server_answers_a_cors_preflight(local_fhir_server: str) -> None:  # noqa: F811
    resp = httpx.options(f"{local_fhir_server}/Observation?patient=p1", headers={
        "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, accept",
        "Access-Control-Request-Private-Network": "true"})
    assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "GET" in resp.headers["access-control-allow-methods"]
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "accept" in allowed
    assert resp.headers["access-control-allow-private-network"] == "true"


@pytest.mark.parametrize("path", ["/metadata", "/Patient/nobody", "/Condition?patient=p1"])
def test_every_answer_carries_cors_headers(local_fhir_server: str, path: str) -> None:  # noqa: F811
    resp = httpx.get(local_fhir_server + path, headers={"Origin": SANDBOX_ORIGIN,
                                                         "Accept": "application/json+fhir"})
    assert resp.headers["access-control-allow-origin"] == "*", path
    assert "location" in resp.headers["access-control-expose-headers"].lower()


def test_the_sandbox_url_carries_the_three_parameters_encoded() -> None:
    url = sandbox_launch_url("http://127.0.0.1:8080/cds-services", "http://127.0.0.1:8090/", "mbc-demo-01")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "sandbox.cds-hooks.org")
    assert parse_qs(parts.query) == {"serviceDiscoveryURL": ["http://127.0.0.1:8080/cds-services"],
                                     "fhirServiceUrl": ["http://127.0.0.1:8090"], "patientId": ["mbc-demo-01"]}
    assert "fhirServiceUrl=http%3A%2F%2F127.0.0.1%3A8090" in parts.query  # the Sandbox wants it URL-encoded


def test_demo_prints_the_sandbox_url_and_the_fhir_side(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import time

    import uvicorn

    from app.settings import get_settings
    from tests.served_app import free_port

    port = free_port()
    monkeypatch.chdir(tmp_path)
    # demo sets these with setdefault: set them here so that they are undone after the test
    monkeypatch.setenv("MBC_CDS_REQUIRE_JWT", "false")
    monkeypatch.setenv("MBC_CDS_DATABASE_URL", f"sqlite:///{tmp_path}/demo.db")
    def fake_run(server: uvicorn.Server) -> None:
        server.started = True
        time.sleep(0.5)  # the banner thread prints once the server says it is listening

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    try:
        assert main(["demo", "--port", str(port), "--fhir-server", "http://127.0.0.1:8099"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    url = next(w for w in out.split() if w.startswith("https://sandbox.cds-hooks.org/?"))
    assert parse_qs(urlsplit(url).query) == {"serviceDiscoveryURL": [f"http://127.0.0.1:{port}/cds-services"],
                                             "fhirServiceUrl": ["http://127.0.0.1:8099"],
                                             "patientId": ["mbc-demo-01"]}
    assert "node tests/fhirserver/server.mjs 8099" in out
    assert "mbc-cds load --fhir-server http://127.0.0.1:8099" in out
