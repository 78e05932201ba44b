"""Issue 16, the network attacker: what a hostile caller could still do, each closed and checked here.

Allow-list escapes and loopback SSRF, control characters in `fhirServer`, cross-site POSTs in demo mode, CORS
defaults, start-up refusal of an unsafe production configuration, card uuids that reveal the patient id,
feedback floods, the `/fhir` Bundle's fullUrl from `Host`, uvicorn's proxy-header trust and `server` header,
slow-loris connections, and log lines that are not JSON."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from app.main import create_app
from app.safety import UnsafeConfiguration, check_configuration, configuration_problems
from app.serving import ServeOptions, uvicorn_kwargs
from cds_hooks.auth import TrustedClient
from cds_hooks.models import MAX_FEEDBACK_ITEMS
from cds_hooks.urlpolicy import AllowList
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings
from tests.served_app import free_port
from tests.slow_server import FaultyFhirServer, running_server

ROOT = Path(__file__).resolve().parents[1]
PID = "pat-harden-1"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}


def bone_patient(pid: str = PID) -> list[dict[str, Any]]:
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": ACTIVE,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
    ]


def production(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {"require_jwt": True, "public_base_url": "https://cds.example.org",
                              "allowed_fhir_servers": "https://ehr.example.org/fhir"}
    return make_settings(tmp_path, **{**values, **overrides})


@pytest.fixture
def fhir() -> Iterator[FaultyFhirServer]:
    with running_server() as srv:
        srv.resources = {"Patient": [bone_patient()[0]], "Condition": bone_patient()[1:]}
        yield srv


# ------------------------------------------------------------------------------------- allow-list (SSRF)


@pytest.mark.parametrize("url", [
    "https://ehr.example.org/fhir/../admin",
    "https://ehr.example.org/fhir/%2e%2e/admin",
    "https://ehr.example.org/fhir/%2E%2E%2fadmin",
    "https://ehr.example.org/fhir/..%2fadmin",
    "https://ehr.example.org/fhir-evil",
    "https://ehr.example.org.evil.example/fhir",
    "https://ehr.example.org@evil.example/fhir",
    "https://evil.example\\@ehr.example.org/fhir",
    "http://ehr.example.org/fhir",
    "https://ehr.example.org:8443/fhir",
])
def test_allow_list_cannot_be_escaped(url: str) -> None:
    assert not AllowList.parse("https://ehr.example.org/fhir", allow_loopback=False).allows(url)


@pytest.mark.parametrize("url", [
    "https://ehr.example.org/fhir", "https://ehr.example.org/fhir/", "HTTPS://EHR.Example.ORG/fhir/R4",
    "https://ehr.example.org:443/fhir", "https://ehr.example.org/fhir/./R4", "https://ehr.example.org/fhir/x/../R4",
])
def test_allow_list_matches_normalised_spellings(url: str) -> None:
    assert AllowList.parse("https://ehr.example.org/fhir/", allow_loopback=False).allows(url)


def test_loopback_fhir_servers_only_in_demo_mode_or_listed_explicitly() -> None:
    targets = ["http://127.0.0.1:8080/internal-admin", "http://localhost/x", "http://[::1]/x", "http://0.0.0.0/x",
               "http://169.254.169.254/latest", "http://127.1.2.3/x", "http://[::ffff:127.0.0.1]/x",
               "http://2130706433/x", "http://0x7f.0.0.1/x", "http://127.1/x", "http://0177.0.0.1/x",
               "http://LOCALHOST./x"]
    production_any = AllowList.parse("*", allow_loopback=False)
    demo = AllowList.parse("", allow_loopback=True)
    for url in targets:
        assert not production_any.allows(url), url
        assert demo.allows(url), url
    assert production_any.allows("https://any-ehr.example.net/fhir")
    assert AllowList.parse("http://127.0.0.1:8080/fhir", allow_loopback=False).allows("http://127.0.0.1:8080/fhir/x")


def test_loopback_fhir_server_refused_with_jwt_on_and_star(tmp_path: Path, fhir: FaultyFhirServer) -> None:
    settings = production(tmp_path, allowed_fhir_servers="*")
    assert not settings.fhir_server_allowed(f"{fhir.url}/internal-admin")
    assert settings.fhir_server_allowed("https://ehr.other.example/fhir")
    assert make_settings(tmp_path).fhir_server_allowed(f"{fhir.url}/ok")  # demo mode: a local test server


@pytest.mark.parametrize("bad", ["https://ehr.example.org/fhir\r\nX-Injected: 1", "https://ehr.example.org/fhir\n",
                                 "https://ehr.example.org/f\thir", "https://ehr.example.org/\x00fhir",
                                 "https://ehr.example.org/fhir\x7f", "https://ehr.example.org/fhir\u2028"])
def test_control_characters_in_fhir_server_are_refused(client: TestClient, bad: str) -> None:
    body = hook_request(bone_patient(), PID, fhirServer=bad)
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 400 and "fhirServer" in resp.json()["detail"], resp.text


def test_paging_is_refused_outside_the_allowed_prefix(tmp_path: Path, fhir: FaultyFhirServer) -> None:
    """A `next` link that climbs out of the allowed prefix is not followed (the token would go with it)."""
    fhir.faulty_types = {"Condition"}
    settings = make_settings(tmp_path, allowed_fhir_servers=fhir.base("paging-loop"), fhir_timeout_seconds=3)
    # paging-loop's next links stay under /paging-loop: allowed; the same server's /ok is not under the prefix
    assert settings.fhir_server_allowed(fhir.base("paging-loop") + "/Condition?page=2")
    assert not settings.fhir_server_allowed(fhir.base("paging-loop") + "/../ok/Condition")
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        escape = fhir.base("paging-loop") + "/../ok"
        body = {"hook": "patient-view", "hookInstance": "i-escape", "fhirServer": escape,
                "context": {"patientId": PID}}
        resp = c.post(SERVICE_URL, json=body)
    assert resp.status_code == 400 and resp.json()["error"] == "fhir-server-not-allowed"
    assert not any(path.startswith("/ok") for _m, path, _h in fhir.requests)


# ---------------------------------------------------------------------------------- demo mode, cross-site


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_non_json_posts_are_415_and_fetch_nothing(client: TestClient, fhir: FaultyFhirServer,
                                                  content_type: str | None) -> None:
    body = json.dumps({"hook": "patient-view", "hookInstance": "i-xsite", "fhirServer": fhir.base("ok"),
                       "context": {"patientId": PID}}).encode()
    headers = {"Origin": "https://evil.example"} | ({"Content-Type": content_type} if content_type else {})
    for url in (SERVICE_URL, f"{SERVICE_URL}/feedback"):
        resp = client.post(url, content=body, headers=headers)
        assert resp.status_code == 415, (url, resp.text)
        assert resp.json()["error"] == "unsupported-media-type"
        assert "access-control-allow-origin" not in resp.headers
    assert fhir.requests == []


def test_json_with_a_charset_is_accepted(client: TestClient) -> None:
    body = json.dumps(hook_request(bone_patient(), PID)).encode()
    resp = client.post(SERVICE_URL, content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert resp.status_code == 200, resp.text


def test_cors_in_demo_mode_defaults_to_the_own_origin(tmp_path: Path) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    with TestClient(create_app(make_settings(tmp_path))) as c:
        resp = c.options(SERVICE_URL, headers=preflight)
        assert resp.headers.get("access-control-allow-origin") is None
        simple = c.get("/cds-services", headers={"Origin": "https://evil.example"})
        assert simple.headers.get("access-control-allow-origin") is None
    own = "https://demo.example.org"
    with TestClient(create_app(make_settings(tmp_path, public_base_url=f"{own}/mbc"))) as c:
        resp = c.options(SERVICE_URL, headers={**preflight, "Origin": own})
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == own


# -------------------------------------------------------------------------------------- start-up refusal


def test_jwt_on_without_public_base_url_or_allow_list_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, require_jwt=True)
    with pytest.raises(UnsafeConfiguration) as err, TestClient(create_app(settings)):
        pass
    message = str(err.value)
    assert "MBC_CDS_PUBLIC_BASE_URL" in message and "MBC_CDS_ALLOWED_FHIR_SERVERS" in message
    assert message.count("\n  - ") == 2  # one message naming both


def test_star_allow_list_starts_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mbc_cds"):
        check_configuration(production(tmp_path, allowed_fhir_servers="*"), [])
    assert any("`*`" in r.getMessage() for r in caplog.records)
    assert configuration_problems(production(tmp_path), []) == []


def _rsa_jwk(bits: int) -> dict[str, Any]:
    if bits >= 1024:
        n = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers().n
    else:  # cryptography no longer generates such keys; a modulus of that size is all the check reads
        n = int.from_bytes(os.urandom(bits // 8), "big") | (1 << (bits - 1)) | 1

    def b64(v: int) -> str:
        return base64.urlsafe_b64encode(v.to_bytes((v.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    return {"kty": "RSA", "kid": f"rsa-{bits}", "n": b64(n), "e": b64(65537)}


@pytest.mark.parametrize("bits", [512, 1024])
def test_weak_rsa_keys_refuse_start_up(tmp_path: Path, bits: int) -> None:
    weak = TrustedClient(iss="https://ehr.example.org", jwks={"keys": [_rsa_jwk(bits)]})
    problems = configuration_problems(production(tmp_path), [weak])
    assert len(problems) == 1 and f"{bits} bits" in problems[0]
    strong = TrustedClient(iss="https://ehr.example.org", jwks={"keys": [_rsa_jwk(2048)]})
    assert configuration_problems(production(tmp_path), [strong]) == []


def test_http_jwks_url_refuses_start_up_except_on_loopback(tmp_path: Path) -> None:
    plain = TrustedClient(iss="https://ehr.example.org", jwks_url="http://ehr.example.org/jwks.json")
    assert "https" in configuration_problems(production(tmp_path), [plain])[0]
    local = TrustedClient(iss="https://ehr.example.org", jwks_url="http://127.0.0.1:9999/jwks.json")
    assert configuration_problems(production(tmp_path), [local]) == []


def test_serve_command_refuses_an_unsafe_configuration(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main
    from app.settings import get_settings

    monkeypatch.setenv("MBC_CDS_REQUIRE_JWT", "true")
    monkeypatch.delenv("MBC_CDS_PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("MBC_CDS_ALLOWED_FHIR_SERVERS", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["serve", "--port", "1"]) == 2  # before uvicorn binds anything
    finally:
        get_settings.cache_clear()
    assert "refuses to start" in capsys.readouterr().err


def test_proxy_headers_are_trusted_only_when_configured(tmp_path: Path) -> None:
    default = uvicorn_kwargs(ServeOptions(), make_settings(tmp_path))
    assert default["proxy_headers"] is False and default["server_header"] is False
    proxied = uvicorn_kwargs(ServeOptions(), make_settings(tmp_path, forwarded_allow_ips="10.0.0.5"))
    assert proxied["proxy_headers"] is True and proxied["forwarded_allow_ips"] == "10.0.0.5"
    assert default["limit_concurrency"] > 0 and default["timeout_keep_alive"] > 0
    assert default["h11_max_incomplete_event_size"] > 0


def test_audience_never_comes_from_the_host_header(tmp_path: Path) -> None:
    """With JWT on, a token naming the host the caller claims to have called is refused."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES384", "use": "sig"})
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]))
    now = int(time.time())
    spoofed = "https://other-service.example/cds-services"
    tok = pyjwt.encode({"iss": "https://ehr.example.org", "aud": spoofed, "exp": now + 60, "iat": now,
                        "jti": str(uuid.uuid4())}, key, algorithm="ES384", headers={"kid": "k1"})
    with TestClient(create_app(production(tmp_path, clients_file=str(clients)))) as c:
        resp = c.get("/cds-services", headers={"Authorization": f"Bearer {tok}", "Host": "other-service.example",
                                               "X-Forwarded-Proto": "https"})
    assert resp.status_code == 401 and resp.json()["reason"] == "bad-audience"


# ------------------------------------------------------------------------------------------------- uuids


def _cards(tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    tmp_path.mkdir()
    app = create_app(make_settings(tmp_path, **settings))
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        resp = c.post(SERVICE_URL, json=hook_request(bone_patient(), PID))
    assert resp.status_code == 200
    return resp.json()["cards"]  # type: ignore[no-any-return]


def test_card_uuids_are_keyed_with_the_deployment_secret(tmp_path: Path) -> None:
    """A uuid stored next to its hook instance and rule id no longer confirms a guessed patient id."""
    first = _cards(tmp_path / "a", audit_salt="deployment-secret-1")
    again = _cards(tmp_path / "b", audit_salt="deployment-secret-1")
    other = _cards(tmp_path / "c", audit_salt="deployment-secret-2")
    assert [c["uuid"] for c in first] == [c["uuid"] for c in again]  # stable: feedback still finds its card
    assert not {c["uuid"] for c in first} & {c["uuid"] for c in other}
    hook_instance = hook_request([], PID)["hookInstance"]
    for card in first:
        rule = card["source"]["topic"]["code"]
        # what an attacker with the database would compute for each guessed id
        public = uuid.uuid5(uuid.UUID("6f1e1f3e-9a53-4c1b-8d0e-2f6b1c3a9e71"), f"{hook_instance}|{PID}|{rule}")
        assert card["uuid"] != str(public)
        for s in card.get("suggestions", []):
            assert s["uuid"] not in {c["uuid"] for c in other}
    separate = _cards(tmp_path / "d", audit_salt="deployment-secret-1", uuid_secret="another-secret")
    assert not {c["uuid"] for c in first} & {c["uuid"] for c in separate}


# --------------------------------------------------------------------------------------------- feedback


def test_feedback_items_per_request_are_capped(client: TestClient) -> None:
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:05:00Z"}
    resp = client.post(f"{SERVICE_URL}/feedback", json={"feedback": [item] * (MAX_FEEDBACK_ITEMS + 1)})
    assert resp.status_code == 400 and "feedback" in resp.json()["detail"]
    # At the cap the request passes validation and reaches the card check (this card was never issued: 404).
    at_cap = client.post(f"{SERVICE_URL}/feedback", json={"feedback": [item] * MAX_FEEDBACK_ITEMS})
    assert at_cap.status_code == 404 and "unknown-card" in at_cap.text


# ------------------------------------------------------------------------------------------- /fhir URLs


def test_knowledge_full_urls_come_from_the_public_base_url(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, public_base_url="https://cds.example.org/mbc/"))
    with TestClient(app) as c:
        bundle = c.get("/fhir/PlanDefinition", headers={"Host": "evil.example"}).json()
    assert bundle["entry"]
    assert all(e["fullUrl"].startswith("https://cds.example.org/mbc/fhir/PlanDefinition/") for e in bundle["entry"])


# -------------------------------------------------------------------------------------------------- logs


def test_every_logger_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_app(make_settings(tmp_path))
    capsys.readouterr()
    logging.getLogger("cds_hooks.fallback").warning("prefetch problems %s", {"keys": 3})
    logging.getLogger("cds_hooks.auth").warning("JWK Set fetch failed")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("uvicorn.access").warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/", "1.1", 200)
    logging.getLogger("sqlalchemy.pool").warning("pool overflow")
    logging.getLogger("some.library").warning("third-party line")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 6, err
    loggers = [json.loads(line)["logger"] for line in lines]
    assert loggers == ["cds_hooks.fallback", "cds_hooks.auth", "uvicorn.error", "uvicorn.access", "sqlalchemy.pool",
                       "some.library"]


# ---------------------------------------------------------------------------------- `mbc-cds serve` itself


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    log_path = tmp / "server.log"
    env = {**os.environ, "MBC_CDS_REQUIRE_JWT": "false", "MBC_CDS_DATABASE_URL": f"sqlite:///{tmp / 's.db'}",
           "MBC_CDS_AUDIT_SPOOL_FILE": str(tmp / "spool.jsonl"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port),
                                 "--timeout-header", "1", "--limit-concurrency", "50"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield base, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_served_responses_have_no_server_header(served: tuple[str, Path]) -> None:
    resp = httpx.get(f"{served[0]}/cds-services")
    assert resp.status_code == 200 and "server" not in resp.headers


def test_slow_loris_connections_are_closed_after_the_header_timeout(served: tuple[str, Path]) -> None:
    port = int(served[0].rsplit(":", 1)[1])
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)  # connects, sends nothing
    socks.append(idle)
    time.sleep(1.0)
    for s in socks[:5]:
        try:
            s.sendall(b"a")  # one more byte: the timeout is on the whole header, not per byte
        except OSError:
            pass
    try:
        for s in socks:
            assert _closed_by_server(s)
    finally:
        for s in socks:
            s.close()
    assert httpx.get(f"{served[0]}/health").status_code == 200  # the server itself is fine


def test_connections_beyond_the_limit_get_503(served: tuple[str, Path]) -> None:
    port = int(served[0].rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]  # --limit-concurrency 50
    try:
        resp = httpx.get(f"{served[0]}/health", timeout=5)
        assert resp.status_code == 503
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert httpx.get(f"{served[0]}/health").status_code == 200


def _read_response(f: BinaryIO) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length body, from a buffered reader of the socket (pipelined
    responses can arrive in one read)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        assert line, head
        head += line
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + f.read(length)


def test_request_heads_over_the_limit_get_400_and_are_closed(served: tuple[str, Path]) -> None:
    port = int(served[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # 20 KiB of headers: under 32 KiB
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        assert _read_response(s.makefile("rb")).startswith(b"HTTP/1.1 200")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # one 40 KiB header, sent at once
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400")
        assert _closed_by_server(s)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # the same in small pieces, no end
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):
                s.sendall(b"X-More: " + b"b" * 1000 + b"\r\n")
        except OSError:
            pass  # closed by the server mid-way
        assert _read_until_closed(s).startswith(b"HTTP/1.1 400")


def _read_until_closed(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_keep_alive_and_pipelined_requests_are_served_and_the_header_timeout_starts_per_request(
        served: tuple[str, Path]) -> None:
    port = int(served[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
        assert _read_response(f).startswith(b"HTTP/1.1 200")
        assert _read_response(f).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle between requests (keep-alive 5 s): longer than the 1 s header timeout, still open
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(f).startswith(b"HTTP/1.1 200")
        body = b'{"hook": "patient-view", "pad": "' + b"x" * 200_000 + b'"}'  # head and a large body in one send
        s.sendall(b"POST /cds-services/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert _read_response(f).startswith(b"HTTP/1.1 404")  # a body beyond the head limit is not a head
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # the next request's head stalls
        time.sleep(1.5)
        try:
            s.sendall(b"a")
        except OSError:
            pass
        assert _closed_by_server(s)


def _closed_by_server(s: socket.socket) -> bool:
    """EOF or a reset (the byte sent after the close draws an RST); an open connection would block in recv
    until the socket timeout and fail the test."""
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_served_log_lines_are_all_json(served: tuple[str, Path]) -> None:
    httpx.get(f"{served[0]}/health")
    time.sleep(0.2)
    lines = [line for line in served[1].read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
