"""Secrets and privacy: the FHIR access token, the EHR's JWT, patient ids and names never reach a log line or
a database row; audit rows hold a salted hash; structured JSON logs carry request id, service, rules, duration."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.logging_setup import JsonFormatter, redact_urls
from app.main import create_app
from app.store.audit import patient_hash
from app.store.models import ALL_TABLES
from tests.conftest import NOW, SERVICE_URL, make_settings
from tests.slow_server import FaultyFhirServer, running_server

PID = "pid-7d3f-q9Zr"
NAME_FAMILY = "Zyxwvutsson"
NAME_GIVEN = "Henriqueta"
ACCESS_TOKEN = "ya29.SECRET-fhir-access-token-4711"
SALT = "pepper-for-this-test"
ISS = "https://ehr.privacy.example"
COMMENT = f"discussed with {NAME_GIVEN} {NAME_FAMILY}"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}

PATIENT = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02",
           "name": [{"family": NAME_FAMILY, "given": [NAME_GIVEN]}],
           "identifier": [{"system": "urn:mrn", "value": f"MRN-{PID}"}]}
CONDITIONS = [
    {"resourceType": "Condition", "id": "c-breast", "subject": {"reference": f"Patient/{PID}",
                                                                 "display": f"{NAME_GIVEN} {NAME_FAMILY}"},
     "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
     "onsetDateTime": "2023-02-01"},
    {"resourceType": "Condition", "id": "c-bone", "subject": {"reference": f"Patient/{PID}"},
     "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
     "onsetDateTime": "2026-05-10"},
]


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def server() -> Iterator[FaultyFhirServer]:
    with running_server() as srv:
        srv.resources = {"Patient": [PATIENT], "Condition": CONDITIONS}
        # the Observation search fails with an OperationOutcome that names the patient
        srv.faulty_types = {"Observation"}
        yield srv


class Capture:
    """Every log record of every logger, at DEBUG, as the JSON lines the service would write."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.setLevel(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Capture:
        names = ["", "mbc_cds", "httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "cds_hooks",
                 "sqlalchemy", "alembic", *logging.root.manager.loggerDict]
        for name in dict.fromkeys(names):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        for name in ("", "mbc_cds"):  # mbc_cds does not propagate to the root logger
            logging.getLogger(name).addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("", "mbc_cds"):
            logging.getLogger(name).removeHandler(self.handler)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


def _secrets(jwt_token: str) -> dict[str, str]:
    header, payload, signature = jwt_token.split(".")
    return {"access token": ACCESS_TOKEN, "JWT": jwt_token, "JWT payload": payload, "JWT signature": signature,
            "patient id": PID, "family name": NAME_FAMILY, "given name": NAME_GIVEN}


def _assert_absent(where: str, text: str, secrets: dict[str, str]) -> None:
    for what, value in secrets.items():
        assert value not in text, f"{what} found in {where}"


def _database_text(client: TestClient) -> str:
    db = client.app.state.runtime.db  # type: ignore[attr-defined]
    rows = []
    with db.session() as s:
        for table in ALL_TABLES:
            rows.extend(repr(tuple(r)) for r in s.execute(select(table)).all())
    return "\n".join(rows)


def test_tokens_patient_ids_and_names_never_logged_or_stored(tmp_path: Path, key: Any, server: FaultyFhirServer,
                                                              capfd: pytest.CaptureFixture[str],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    clients = tmp_path / "clients.json"
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES384", "use": "sig"})
    clients.write_text(json.dumps([{"iss": ISS, "jwks": {"keys": [jwk]}}]))
    settings = make_settings(tmp_path, require_jwt=True, clients_file=str(clients), audit_salt=SALT,
                             fhir_timeout_seconds=2.0, log_level="DEBUG", public_base_url="http://testserver",
                             allowed_fhir_servers=server.url)

    def token(aud: str) -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())},
                          key, algorithm="ES384", headers={"kid": "k1"})

    hook_token = token(f"http://testserver{SERVICE_URL}")
    secrets = _secrets(hook_token)
    body = {"hook": "patient-view", "hookInstance": "5e1b2c3d-0000-4c1e-9a42-1f0d0e3c4a11",
            "fhirServer": server.base("500"),
            "fhirAuthorization": {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "mbc-cds", "patient": PID},
            "context": {"patientId": PID, "userId": "Practitioner/1"},
            "prefetch": {"patient": PATIENT}}
    caplog.set_level(logging.DEBUG)
    with Capture() as cap:
        app = create_app(settings)
        with TestClient(app) as client:
            app.state.runtime.clock = lambda: NOW
            resp = client.post(SERVICE_URL, json=body, headers={"Authorization": f"Bearer {hook_token}",
                                                                "X-Request-ID": "req-privacy-1"})
            assert resp.status_code == 200, resp.text
            cards = resp.json()["cards"]
            assert "data-incomplete" in [c["source"]["topic"]["code"] for c in cards]
            # refused calls are logged too: with the token they carried?
            client.post(SERVICE_URL, json=body, headers={"Authorization": f"Bearer {hook_token}"})  # replay
            bad = hook_token[:-6] + "AAAAAA"
            client.post(SERVICE_URL, json=body, headers={"Authorization": f"Bearer {bad}"})
            # feedback with a free-text comment naming the patient
            fb_token = token(f"http://testserver{SERVICE_URL}/feedback")
            secrets["feedback JWT"] = fb_token
            app.state.runtime.audit.flush()
            fb = {"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden",
                                "outcomeTimestamp": "2026-11-20T10:05:00Z",
                                "overrideReason": {"reason": {"code": "other", "display": "Other"},
                                                   "userComment": COMMENT}}]}
            assert client.post(f"{SERVICE_URL}/feedback", json=fb,
                               headers={"Authorization": f"Bearer {fb_token}"}).status_code == 200
            db_text = _database_text(client)
            db_path = Path(settings.database_url.removeprefix("sqlite:///"))
            with client.app.state.runtime.db.engine.connect() as conn:  # type: ignore[attr-defined]
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            raw_files = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
            invocations = [r for r in db_text.splitlines() if "mbc-palliative-care" in r and "5e1b2c3d" in r]

    # the FHIR server did get the token (so the test would see it if it leaked)
    assert any(r[2].get("authorization") == f"Bearer {ACCESS_TOKEN}" for r in server.requests)

    logs = cap.text() + "\n" + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    out, err = capfd.readouterr()
    _assert_absent("logs", logs, secrets)
    _assert_absent("stdout/stderr", out + err, secrets)
    _assert_absent("card text", json.dumps(cards), {k: v for k, v in secrets.items() if k != "patient id"})
    _assert_absent("database rows", db_text, {**secrets, "comment": COMMENT})
    for what, value in {**secrets, "comment": COMMENT}.items():
        assert value.encode() not in raw_files, f"{what} found in the database files"

    # the audit row holds the salted hash: not the id, not an unsalted hash of it
    assert invocations and patient_hash(PID, SALT) in invocations[0]
    assert hashlib.sha256(PID.encode()).hexdigest() not in db_text
    assert patient_hash(PID, "change-me-per-deployment") not in db_text

    # structured logs: request id, service, rule ids, duration
    answered = [line for line in cap.lines() if line.get("msg") == "hook answered"]
    assert answered, cap.text()[-2000:]
    line = answered[0]
    assert line["request_id"] == "req-privacy-1"
    assert line["service"] == "mbc-palliative-care"
    assert "data-incomplete" in line["rules"] and "mbc-overview" in line["rules"]
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] > 0
    refused = [line for line in cap.lines() if line.get("msg") == "JWT refused"]
    assert {r["reason"] for r in refused} >= {"replayed-jti", "bad-signature"}


def test_httpx_urls_are_redacted_even_at_debug(tmp_path: Path, server: FaultyFhirServer) -> None:
    """An operator who turns httpx logging up still does not get patient ids from request URLs."""
    settings = make_settings(tmp_path, fhir_timeout_seconds=2.0)
    body = {"hook": "patient-view", "hookInstance": "i-redact", "fhirServer": server.base("ok"),
            "context": {"patientId": PID}}
    with Capture() as cap:
        with TestClient(create_app(settings)) as client:
            logging.getLogger("httpx").setLevel(logging.DEBUG)  # after the app configured it
            assert client.post(SERVICE_URL, json=body).status_code == 200
    assert "HTTP Request" in cap.text()  # httpx did log the calls
    assert PID not in cap.text()


def test_redact_urls() -> None:
    text = 'HTTP Request: GET https://ehr.example.org:8443/fhir/Condition?patient=abc "HTTP/1.1 200 OK"'
    assert redact_urls(text) == 'HTTP Request: GET https://ehr.example.org:8443/... "HTTP/1.1 200 OK"'
    assert redact_urls("no url here") == "no url here"


def test_fhir_authorization_is_not_in_model_dumps() -> None:
    from cds_hooks.models import HookRequest

    req = HookRequest.model_validate({"hook": "patient-view", "hookInstance": "i", "context": {"patientId": PID},
                                      "fhirServer": "https://x.example/fhir",
                                      "fhirAuthorization": {"access_token": ACCESS_TOKEN}})
    assert ACCESS_TOKEN not in repr(req) and ACCESS_TOKEN not in req.model_dump_json()
    assert req.access_token() == ACCESS_TOKEN


def test_an_unexpected_error_is_a_json_500_whose_message_is_not_logged(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    app = create_app(make_settings(tmp_path))
    with Capture() as cap, TestClient(app) as client:
        async def boom(*args: Any, **kwargs: Any) -> Any:
            raise ValueError(f"cannot handle patient {PID} named {NAME_FAMILY}")

        monkeypatch.setattr(app.state.runtime.handler, "handle", boom)
        body = {"hook": "patient-view", "hookInstance": "i-boom", "context": {"patientId": PID},
                "prefetch": {"patient": PATIENT}}
        resp = client.post(SERVICE_URL, json=body, headers={"X-Request-ID": "req-boom"})
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal-error", "status": 500,
                           "detail": "the service failed; the error was logged"}
    assert resp.headers["x-request-id"] == "req-boom"
    out, err = capfd.readouterr()
    for text in (cap.text(), out, err):
        assert PID not in text and NAME_FAMILY not in text
    errors = [line for line in cap.lines() if line.get("msg") == "unhandled error"]
    assert errors and errors[0]["exc_type"] == "ValueError" and errors[0]["request_id"] == "req-boom"
    assert any("boom" in w for w in errors[0]["where"])
