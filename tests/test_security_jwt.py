"""CDS Hooks 2.0 client JWTs through the HTTP API: every endpoint an EHR calls, every refusal a 401 naming the
failed check (and nothing else), the database replay cache shared by app instances, the public base URL."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings
from tests.slow_server import FaultyFhirServer, running_server

BASE = "http://testserver"
HOOK_AUD = f"{BASE}{SERVICE_URL}"
ISS_INLINE = "https://ehr.example.com"
ISS_URL = "https://other-ehr.example.net"
PID = "pat-jwt-1"


def public_jwk(private_key: Any, kid: str, alg: str = "ES384") -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def url_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def jwks_server(url_key: ec.EllipticCurvePrivateKey) -> Iterator[FaultyFhirServer]:
    with running_server() as server:
        server.jwks = {"keys": [public_jwk(url_key, "url-1")]}
        yield server


@pytest.fixture
def clients_file(tmp_path: Path, key: ec.EllipticCurvePrivateKey, jwks_server: FaultyFhirServer) -> Path:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([
        {"iss": ISS_INLINE, "jwks": {"keys": [public_jwk(key, "inline-1")]}},
        {"iss": ISS_URL, "jwks_url": f"{jwks_server.url}/jwks.json"},
    ]))
    return path


def token(signing_key: Any, aud: Any = HOOK_AUD, *, iss: str = ISS_INLINE, kid: str | None = "inline-1",
          alg: str = "ES384", headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    h: dict[str, Any] = {"typ": "JWT", **(headers or {})}
    if kid is not None:
        h["kid"] = kid
    return jwt.encode(payload, signing_key, algorithm=alg, headers=h)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def bone_patient() -> list[dict[str, Any]]:
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    return [
        {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Condition", "id": "c-breast", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": active,
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c-bone", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": active,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
    ]


def jwt_settings(tmp_path: Path, **overrides: Any) -> Any:
    """A production configuration: JWT on, the public base URL and the FHIR allow-list set."""
    values: dict[str, Any] = {"require_jwt": True, "public_base_url": BASE,
                              "allowed_fhir_servers": "https://ehr.example.org/fhir"}
    return make_settings(tmp_path, **{**values, **overrides})


def jwt_client(tmp_path: Path, clients_file: Path, **overrides: Any) -> TestClient:
    settings = jwt_settings(tmp_path, clients_file=str(clients_file), **overrides)
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path, clients_file: Path) -> Iterator[TestClient]:
    with jwt_client(tmp_path, clients_file) as c:
        c.app.state.runtime.clock = lambda: NOW  # type: ignore[attr-defined]
        yield c


def assert_refused(resp: Any, reason: str, *secrets: str) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    body = resp.json()
    assert body["error"] == "unauthorized" and body["status"] == 401
    assert body["reason"] == reason, body
    text = resp.text
    assert "BEGIN" not in text and '"x"' not in text and "kty" not in text
    for secret in secrets:
        assert secret not in text
        for part in secret.split("."):
            assert len(part) < 8 or part not in text


# ------------------------------------------------------------------------------------------ accepted


def test_valid_token_is_accepted_on_discovery_hook_feedback_and_report(client: TestClient, key: Any) -> None:
    assert client.get("/cds-services", headers=auth(token(key, f"{BASE}/cds-services"))).status_code == 200
    resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(token(key)))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    client.app.state.runtime.audit.flush()  # type: ignore[attr-defined]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:05:00Z",
                        "overrideReason": {"reason": {"code": "x", "system": "http://example.org",
                                                      "display": "X"}}}]}
    resp = client.post(f"{SERVICE_URL}/feedback", json=fb, headers=auth(token(key, f"{HOOK_AUD}/feedback")))
    assert resp.status_code == 200, resp.text
    report = client.get(f"{SERVICE_URL}/feedback/report", headers=auth(token(key, f"{HOOK_AUD}/feedback/report")))
    assert report.status_code == 200


def test_aud_may_be_a_list_naming_the_url(client: TestClient, key: Any) -> None:
    tok = token(key, ["https://elsewhere.example.org/x", f"{BASE}/cds-services"])
    assert client.get("/cds-services", headers=auth(tok)).status_code == 200


def test_issuer_with_jwks_url_is_fetched_from_its_url(client: TestClient, url_key: Any,
                                                      jwks_server: FaultyFhirServer) -> None:
    before = sum(1 for r in jwks_server.requests if r[1] == "/jwks.json")
    for _ in range(3):
        tok = token(url_key, f"{BASE}/cds-services", iss=ISS_URL, kid="url-1")
        assert client.get("/cds-services", headers=auth(tok)).status_code == 200
    fetched = sum(1 for r in jwks_server.requests if r[1] == "/jwks.json") - before
    assert fetched == 1  # cached with a TTL


def test_public_base_url_sets_the_expected_audience(tmp_path: Path, clients_file: Path, key: Any) -> None:
    with jwt_client(tmp_path, clients_file, public_base_url="https://cds.hospital.example/mbc/") as c:
        public = "https://cds.hospital.example/mbc/cds-services"
        assert c.get("/cds-services", headers=auth(token(key, public))).status_code == 200
        # the URL uvicorn sees is not the one the EHR called: refused
        assert_refused(c.get("/cds-services", headers=auth(token(key, f"{BASE}/cds-services"))), "bad-audience")


# ------------------------------------------------------------------------------------------ refused


def test_missing_token(client: TestClient) -> None:
    assert_refused(client.get("/cds-services"), "missing-token")
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID)), "missing-token")
    assert_refused(client.post(f"{SERVICE_URL}/feedback", json={"feedback": []}), "missing-token")
    assert_refused(client.get("/cds-services", headers={"Authorization": "Basic dXNlcjpwYXNz"}), "missing-token")


def test_expired_token(client: TestClient, key: Any) -> None:
    now = int(time.time())
    tok = token(key, iat=now - 900, exp=now - 600)
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "expired", tok)


def test_future_iat(client: TestClient, key: Any) -> None:
    now = int(time.time())
    tok = token(key, iat=now + 600, exp=now + 900)
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "not-yet-valid", tok)


def test_wrong_audience(client: TestClient, key: Any) -> None:
    for aud in (f"{BASE}/cds-services", "https://evil.example.org/cds-services/mbc-palliative-care",
                f"{HOOK_AUD}/"):
        tok = token(key, aud)
        assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                       "bad-audience", tok)


def test_unknown_issuer(client: TestClient, key: Any) -> None:
    tok = token(key, iss="https://unknown.example.org")
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "unknown-issuer", tok)


def test_wrong_key(client: TestClient, other_key: Any) -> None:
    tok = token(other_key)  # right kid, another key
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "bad-signature", tok)
    tok = token(other_key, kid="nobody")
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "unknown-key", tok)


def test_alg_none(client: TestClient) -> None:
    now = int(time.time())
    tok = jwt.encode({"iss": ISS_INLINE, "aud": HOOK_AUD, "exp": now + 300, "iat": now, "jti": "n-1"},
                     None, algorithm="none", headers={"kid": "inline-1"})
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "unsupported-algorithm", tok)


def test_hs256_signed_with_the_public_key(client: TestClient, key: Any) -> None:
    import base64
    import hashlib
    import hmac

    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    for secret in (pem, json.dumps(public_jwk(key, "inline-1")).encode()):
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "inline-1"}).encode())
        payload = b64(json.dumps({"iss": ISS_INLINE, "aud": HOOK_AUD, "exp": now + 300, "iat": now,
                                  "jti": str(uuid.uuid4())}).encode())
        sig = b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        tok = f"{header}.{payload}.{sig}"
        assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                       "unsupported-algorithm", tok)


def test_replayed_jti(client: TestClient, key: Any) -> None:
    tok = token(key)
    body = hook_request(bone_patient(), PID)
    assert client.post(SERVICE_URL, json=body, headers=auth(tok)).status_code == 200
    assert_refused(client.post(SERVICE_URL, json=body, headers=auth(tok)), "replayed-jti", tok)
    # a fresh jti is fine again
    assert client.post(SERVICE_URL, json=body, headers=auth(token(key))).status_code == 200


def test_missing_jti(client: TestClient, key: Any) -> None:
    tok = token(key, jti=None)
    assert_refused(client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok)),
                   "missing-claim", tok)


def test_garbage_tokens(client: TestClient) -> None:
    for tok in ("abc", "a.b.c", "x" * 20_000, "eyJhbGciOiJFUzM4NCJ9.e30.", "..", "a.b.c d"):
        resp = client.get("/cds-services", headers={"Authorization": f"Bearer {tok}"})
        assert resp.status_code == 401, (tok[:20], resp.text)
        assert resp.json()["reason"] in ("malformed-token", "unsupported-algorithm", "missing-token", "missing-claim")


def test_jku_is_never_fetched_and_cannot_bring_in_a_key(client: TestClient, url_key: Any, other_key: Any,
                                                        jwks_server: FaultyFhirServer) -> None:
    evil = f"{jwks_server.url}/evil-jwks.json"
    # The registered key with a jku naming another URL: fine (contract v2), the key comes from the registration.
    tok = token(url_key, f"{BASE}/cds-services", iss=ISS_URL, kid="url-1", headers={"jku": evil})
    assert client.get("/cds-services", headers=auth(tok)).status_code == 200
    # The attacker's own key, announced by jku: refused, whatever kid it claims.
    tok = token(other_key, f"{BASE}/cds-services", iss=ISS_URL, kid="evil-1", headers={"jku": evil})
    assert_refused(client.get("/cds-services", headers=auth(tok)), "unknown-key", tok)
    tok = token(other_key, f"{BASE}/cds-services", iss=ISS_URL, kid="url-1", headers={"jku": evil})
    assert_refused(client.get("/cds-services", headers=auth(tok)), "bad-signature", tok)
    assert not any(r[1] == "/evil-jwks.json" for r in jwks_server.requests)


def test_jwks_unreachable_is_a_401_too(tmp_path: Path, key: Any) -> None:
    with running_server() as server:  # serves no JWK Set: 404
        path = tmp_path / "clients.json"
        path.write_text(json.dumps([{"iss": ISS_URL, "jwks_url": f"{server.url}/jwks.json"}]))
        with jwt_client(tmp_path, path) as c:
            tok = token(key, f"{BASE}/cds-services", iss=ISS_URL, kid="k")
            assert_refused(c.get("/cds-services", headers=auth(tok)), "jwks-unavailable", tok)


def test_unknown_service_needs_a_token_first(client: TestClient, key: Any) -> None:
    assert_refused(client.post("/cds-services/nope", json={}), "missing-token")
    tok = token(key, f"{BASE}/cds-services/nope")
    assert client.post("/cds-services/nope", json={}, headers=auth(tok)).status_code == 404


def test_refusals_are_logged_by_category_only(client: TestClient, key: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tok = token(key, "https://evil.example.org/")
    with caplog.at_level(logging.DEBUG, logger="mbc_cds"):
        client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(tok))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert tok not in text and tok.split(".")[2] not in text


def test_replay_cache_database_down_is_503_not_500(client: TestClient, key: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    def down(*args: Any) -> bool:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    cache = client.app.state.runtime.verifier.replay_cache  # type: ignore[attr-defined]
    monkeypatch.setattr(cache, "_seen", down)
    resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(token(key)))
    assert resp.status_code == 503 and resp.json()["error"] == "auth-unavailable"


# ------------------------------------------------------------------------- replay across app instances


def test_replay_is_caught_by_another_app_instance_on_the_same_database(tmp_path: Path, clients_file: Path,
                                                                       key: Any) -> None:
    """Two workers (two app instances) on one SQLite file share the replay cache."""
    tok = token(key)
    body = hook_request(bone_patient(), PID)
    with jwt_client(tmp_path, clients_file) as first, jwt_client(tmp_path, clients_file) as second:
        assert first.post(SERVICE_URL, json=body, headers=auth(tok)).status_code == 200
        assert_refused(second.post(SERVICE_URL, json=body, headers=auth(tok)), "replayed-jti", tok)
        assert_refused(first.post(SERVICE_URL, json=body, headers=auth(tok)), "replayed-jti", tok)
        other = token(key)
        assert second.post(SERVICE_URL, json=body, headers=auth(other)).status_code == 200


# --------------------------------------------------------------------------------------- start-up


def test_startup_warns_when_jwt_is_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mbc_cds"):
        with TestClient(create_app(make_settings(tmp_path, require_jwt=False))):
            pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("mbc_cds")]
    assert any("JWT verification is OFF" in r.getMessage() for r in warnings)


def test_startup_is_quiet_about_jwt_when_it_is_on(tmp_path: Path, clients_file: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mbc_cds"):
        with jwt_client(tmp_path, clients_file, audit_salt="s3cret-salt"):
            pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("mbc_cds")]


def test_jwt_is_required_by_default(tmp_path: Path) -> None:
    from app.settings import Settings

    assert Settings.model_fields["require_jwt"].default is True
    # on, and no clients file: nobody gets in (a 401, not a 500)
    with TestClient(create_app(jwt_settings(tmp_path))) as c:
        resp = c.get("/cds-services")
        assert resp.status_code == 401


def test_feedback_only_from_the_client_that_received_the_card(client: TestClient, key: Any, url_key: Any) -> None:
    resp = client.post(SERVICE_URL, json=hook_request(bone_patient(), PID), headers=auth(token(key)))
    card = next(c for c in resp.json()["cards"] if c["source"]["topic"]["code"] == "referral-palliative-care")
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:05:00Z",
                        "overrideReason": {"reason": {"code": "patient-declined", "display": "Patient declined"}}}]}
    other = client.post(f"{SERVICE_URL}/feedback", json=fb,
                        headers=auth(token(url_key, f"{HOOK_AUD}/feedback", iss=ISS_URL, kid="url-1")))
    assert other.status_code == 404, other.text
    assert other.json()["error"] == "unknown-card"
    own = client.post(f"{SERVICE_URL}/feedback", json=fb, headers=auth(token(key, f"{HOOK_AUD}/feedback")))
    assert own.status_code == 200, own.text
    assert own.json()["snoozed"][0]["rule"] == "referral-palliative-care"
