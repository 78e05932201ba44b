"""The public CDS Hooks Sandbox as a client: its JWT shape (cds-hooks/sandbox, src/retrieve-data-helpers/
jwt-generator.js: ES384, `kid`, `jku` = its public JWK Set URL, 5-minute lifetime, `aud` = the exact URL called)
verified against keys registered inline and at a local `jwks_url`; the `jku` is never fetched."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from app.main import create_app
from cds_hooks.auth import load_clients
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings
from tests.slow_server import FaultyFhirServer, running_server
from tests.test_security_jwt import PID, bone_patient

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
DOCUMENTED = Path(__file__).resolve().parents[1] / "docs" / "examples" / "clients-cds-hooks-sandbox.json"
BASE = "http://testserver"


@pytest.fixture(scope="module")
def sandbox_key() -> ec.EllipticCurvePrivateKey:
    # A stand-in for the Sandbox's key pair, under the Sandbox's kid (the real private key is not used here).
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": SANDBOX_KID, "alg": "ES384", "use": "sig"})
    return jwk


def sandbox_token(key: ec.EllipticCurvePrivateKey, audience: str) -> str:
    now = int(time.time())
    payload = {"iss": SANDBOX_ISS, "aud": audience, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    header = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    return jwt.encode(payload, key, algorithm="ES384", headers=header)


@pytest.fixture(scope="module")
def jwks_server(sandbox_key: ec.EllipticCurvePrivateKey) -> Iterator[FaultyFhirServer]:
    with running_server() as server:
        server.jwks = {"keys": [public_jwk(sandbox_key)]}
        yield server


def registration(kind: str, key: ec.EllipticCurvePrivateKey, server: FaultyFhirServer) -> dict[str, Any]:
    if kind == "inline":
        return {"iss": SANDBOX_ISS, "jwks": {"keys": [public_jwk(key)]}}
    return {"iss": SANDBOX_ISS, "jwks_url": f"{server.url}/jwks.json"}


def test_the_documented_sandbox_registration_loads() -> None:
    (client,) = load_clients(DOCUMENTED)
    assert client.iss == SANDBOX_ISS and client.jwks_url is None and client.jku == ()
    (key,) = client.jwks["keys"]  # type: ignore[index]
    assert (key["kid"], key["crv"], key["alg"]) == (SANDBOX_KID, "P-384", "ES384")
    assert "d" not in key


@pytest.mark.parametrize("kind", ["inline", "jwks_url"])
def test_a_sandbox_shaped_token_opens_discovery_hook_and_feedback(
        kind: str, tmp_path: Path, sandbox_key: ec.EllipticCurvePrivateKey, jwks_server: FaultyFhirServer) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([registration(kind, sandbox_key, jwks_server)]))
    settings = make_settings(tmp_path, require_jwt=True, clients_file=str(path), public_base_url=BASE,
                             allowed_fhir_servers="https://ehr.example.org/fhir")
    with TestClient(create_app(settings)) as client:
        client.app.state.runtime.clock = lambda: NOW  # type: ignore[attr-defined]

        def bearer(path: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {sandbox_token(sandbox_key, BASE + path)}"}

        assert client.get("/cds-services", headers=bearer("/cds-services")).status_code == 200
        resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=bearer(SERVICE_URL))
        assert resp.status_code == 200, resp.text
        card = resp.json()["cards"][0]
        client.app.state.runtime.audit.flush()  # type: ignore[attr-defined]
        feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                                  "outcomeTimestamp": "2026-11-20T10:05:00Z"}]}
        url = f"{SERVICE_URL}/feedback"
        resp = client.post(url, json=feedback, headers=bearer(url))
        assert resp.status_code == 200, resp.text
        # aud is the exact URL: the hook's token does not open the feedback endpoint
        resp = client.post(url, json=feedback, headers=bearer(SERVICE_URL))
        assert resp.status_code == 401 and resp.json()["reason"] == "bad-audience"
    assert not any("well-known" in r[1] for r in jwks_server.requests)
