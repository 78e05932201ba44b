"""Issue 16, the failing dependency: a dead FHIR server, a hostile JWK Set host, a blackholed database.

- 20 hooks hanging on a dead FHIR server leave a healthy server's hooks unaffected (real uvicorn, real
  sockets, two FHIR servers on two origins); per-hook and per-origin limits; a resource cap on fetched data;
- the JWK Set: one overall deadline (a trickle is cut), streamed with a 512 KiB cap, no compression, rate
  limits counted from the end of a fetch, its own httpx client, weak RSA keys ignored;
- the database: connect timeouts, the replay check bounded in time (503 with a reason), audit rows spooled
  when the database is down and written when it is back.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.data_requirements import prefetch_types
from app.main import create_app
from app.store.audit import AuditRecord, AuditWriter
from app.store.db import Database, DbTimeouts
from app.store.migrate import upgrade
from app.store.models import Invocation
from app.store.replay import DatabaseReplayCache, ReplayCacheUnavailable
from cds_hooks.auth import AuthError, JwtVerifier, TrustedClient
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.models import HookRequest
from cds_hooks.outbound import OriginLimiter
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings, pg_url
from tests.served_app import serve_app
from tests.slow_server import running_server

PID = "pat-deps-1"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
RESOURCES = {
    "Patient": [{"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"}],
    "Condition": [
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": f"Patient/{PID}"},
         "clinicalStatus": ACTIVE,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
    ],
}
EVERY_TYPE = set(prefetch_types().values())
BUDGET = 4.0
DEAD_HOOKS = 20


def _hook(fhir_server: str, n: int) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": f"deps-{n}-{uuid.uuid4()}", "fhirServer": fhir_server,
            "fhirAuthorization": {"access_token": "tok", "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "mbc-cds"},
            "context": {"patientId": PID, "userId": "Practitioner/1"}}


def _rules(doc: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in doc["cards"]]


# ------------------------------------------------------------------------------- one dead FHIR server


def test_a_healthy_fhir_server_is_unaffected_while_20_hooks_hang_on_a_dead_one(tmp_path: Path) -> None:
    per_origin = 8
    with running_server() as dead, running_server() as healthy, \
            serve_app(tmp_path, fhir_timeout_seconds=BUDGET, fhir_connect_timeout_seconds=1,
                      fhir_max_connections_per_origin=per_origin) as (base, _db):
        dead.faulty_types = set(EVERY_TYPE)
        healthy.resources = RESOURCES

        async def run() -> tuple[list[httpx.Response], list[tuple[httpx.Response, float]]]:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                stuck = [asyncio.create_task(client.post(SERVICE_URL, json=_hook(dead.base("hang"), i)))
                         for i in range(DEAD_HOOKS)]
                # the dead server is holding connections by now
                deadline = time.monotonic() + BUDGET / 2
                while len(dead.requests) < 8 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)

                async def timed(i: int) -> tuple[httpx.Response, float]:
                    started = time.monotonic()
                    resp = await client.post(SERVICE_URL, json=_hook(healthy.base("ok"), 100 + i))
                    return resp, time.monotonic() - started

                fine = await asyncio.gather(*(timed(i) for i in range(3)))
                return await asyncio.gather(*stuck), list(fine)

        stuck, fine = asyncio.run(run())
        dead_requests = len(dead.requests)
    for resp, elapsed in fine:
        assert resp.status_code == 200, resp.text
        rules = _rules(resp.json())
        assert "data-incomplete" not in rules and "mbc-overview" in rules, rules
        # the healthy server's hooks did not wait behind the dead server's reads (that took the rest of the
        # dead hooks' deadline: several seconds), they took what a healthy server takes
        assert elapsed < BUDGET / 2, elapsed
    for resp in stuck:
        assert resp.status_code == 200 and "data-incomplete" in _rules(resp.json())
    # the dead origin got its share, not every connection (20 hooks x every prefetch key)
    assert dead_requests <= 2 * per_origin, dead_requests


def test_origin_limiter_caps_each_origin_and_forgets_idle_ones() -> None:
    limiter = OriginLimiter(3)
    peak: dict[str, int] = {}

    async def use(url: str) -> None:
        async with limiter.slot(url):
            origin = "a" if "a.example" in url else "b"
            peak[origin] = max(peak.get(origin, 0), limiter.in_use(f"https://{origin}.example"))
            await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.gather(*(use("https://a.example/fhir/X") for _ in range(20)),
                             *(use("https://B.example:443/fhir/Y".lower().replace(":443", "")) for _ in range(5)))

    asyncio.run(main())
    assert peak == {"a": 3, "b": 3}
    assert limiter._slots == {}  # noqa: SLF001 - no entry left for origins nobody uses


def _request(fhir_server: str) -> HookRequest:
    return HookRequest.model_validate({"hook": "patient-view", "hookInstance": "i", "fhirServer": fhir_server,
                                       "context": {"patientId": PID}})


def test_one_hook_uses_at_most_its_share_of_connections() -> None:
    running = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            resolver = PrefetchResolver(http, per_hook=3, limiter=OriginLimiter(50))
            templates = {f"k{i}": f"Observation?patient={{{{context.patientId}}}}&n={i}" for i in range(12)}
            result = await resolver.resolve(_request("https://ehr.example.org/fhir"), templates)
            assert not result.problems

    asyncio.run(main())
    assert peak == 3


def test_fetched_resources_are_capped_like_the_prefetch() -> None:
    pages = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        pages += 1
        entries = [{"resource": {"resourceType": "Observation", "id": f"o{pages}-{i}"}} for i in range(1000)]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries, "link": [
            {"relation": "next", "url": f"https://ehr.example.org/fhir/Observation?page={pages + 1}"}]})

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            resolver = PrefetchResolver(http, max_pages=500, max_resources=2500)
            return await resolver.resolve(_request("https://ehr.example.org/fhir"),
                                          {"observations": "Observation?patient={{context.patientId}}"})

    result = asyncio.run(main())
    assert len(result.resources["observations"]) == 2500
    assert [p.kind for p in result.problems] == ["too-many-resources"]
    assert pages == 3


def test_paging_never_leaves_the_allowed_prefix() -> None:
    from cds_hooks.urlpolicy import AllowList

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [], "link": [
            {"relation": "next", "url": "https://ehr.example.org/fhir/../admin/secrets"}]})

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            allow = AllowList.parse("https://ehr.example.org/fhir", allow_loopback=False)
            resolver = PrefetchResolver(http, url_allowed=allow.allows)
            return await resolver.resolve(_request("https://ehr.example.org/fhir"),
                                          {"observations": "Observation?patient={{context.patientId}}"})

    result = asyncio.run(main())
    assert [p.kind for p in result.problems] == ["refused-url"]
    assert seen == ["/fhir/Observation"]


# --------------------------------------------------------------------------------------------- JWK Set


ISS = "https://ehr.example.org"
JWKS_URL = "https://ehr.example.org/jwks.json"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES384", "use": "sig"})
    return {"keys": [jwk]}


def _token(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": "https://cds.example.org/x", "exp": now + 60, "iat": now,
                       "jti": str(uuid.uuid4())}, key, algorithm="ES384", headers={"kid": kid})


def _verify(handler: Any, key: ec.EllipticCurvePrivateKey, **kwargs: Any) -> tuple[list[Any], float]:
    """Verify one token against a JWK Set served by `handler`; (outcomes, seconds)."""

    async def main() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            verifier = JwtVerifier([TrustedClient(iss=ISS, jwks_url=JWKS_URL)], http, **kwargs)
            try:
                return [await verifier.verify(f"Bearer {_token(key)}", "https://cds.example.org/x")]
            except AuthError as exc:
                return [exc.category]

    started = time.monotonic()
    result = asyncio.run(main())
    return result, time.monotonic() - started


def test_a_trickling_jwks_is_cut_by_one_overall_deadline(key: ec.EllipticCurvePrivateKey) -> None:
    body = json.dumps(_jwks(key)).encode()

    async def trickle() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            await asyncio.sleep(0.05)  # each byte well inside any per-read timeout
            yield body[i:i + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Stream(trickle()))

    outcomes, elapsed = _verify(handler, key, jwks_timeout=0.5)
    assert outcomes == ["jwks-unavailable"]
    assert elapsed < 3  # the whole body would take len(body) * 0.05 s (> 15 s)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            self.read += len(chunk)
            yield chunk


def test_a_huge_jwks_is_refused_after_512_kib_not_read_whole(key: ec.EllipticCurvePrivateKey) -> None:
    chunk = b" " * 65536
    sent = 0

    async def huge() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):  # 64 MiB, no Content-Length
            sent += len(chunk)
            yield chunk

    outcomes, _ = _verify(lambda r: httpx.Response(200, stream=_Stream(huge())), key)
    assert outcomes == ["jwks-unavailable"]
    assert sent <= 512 * 1024 + 2 * len(chunk)


def test_a_compressed_jwks_is_refused_and_identity_is_asked_for(key: ec.EllipticCurvePrivateKey) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, content=gzip.compress(json.dumps(_jwks(key)).encode()),
                              headers={"Content-Encoding": "gzip"})

    outcomes, _ = _verify(handler, key)
    assert outcomes == ["jwks-unavailable"] and asked == ["identity"]


def test_the_plain_jwks_still_works(key: ec.EllipticCurvePrivateKey) -> None:
    outcomes, _ = _verify(lambda r: httpx.Response(200, json=_jwks(key)), key)
    assert isinstance(outcomes[0], dict) and outcomes[0]["iss"] == ISS


def test_jwks_rate_limits_count_from_the_end_of_a_fetch(key: ec.EllipticCurvePrivateKey) -> None:
    """A fetch that takes longer than the back-off must not let the next fetch start at once."""
    clock = [1000.0]
    fetches = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal fetches
        fetches += 1
        clock[0] += 10.0  # the fetch took 10 s (a slow host), then failed
        return httpx.Response(500)

    async def main() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            verifier = JwtVerifier([TrustedClient(iss=ISS, jwks_url=JWKS_URL)], http, jwks_failure_backoff=2.0,
                                   clock=lambda: clock[0])
            out = []
            for _ in range(3):
                try:
                    await verifier.verify(f"Bearer {_token(key)}", "https://cds.example.org/x")
                except AuthError as exc:
                    out.append(exc.category)
            return out

    assert asyncio.run(main()) == ["jwks-unavailable"] * 3
    assert fetches == 1


def test_weak_rsa_keys_in_a_fetched_jwks_are_ignored() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key()))
    jwk.update({"kid": "weak", "alg": "RS384", "use": "sig"})
    now = int(time.time())
    tok = jwt.encode({"iss": ISS, "aud": "https://cds.example.org/x", "exp": now + 60, "iat": now, "jti": "j"},
                     weak, algorithm="RS384", headers={"kid": "weak"})

    async def main() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(
                lambda r: httpx.Response(200, json={"keys": [jwk]}))) as http:
            verifier = JwtVerifier([TrustedClient(iss=ISS, jwks_url=JWKS_URL)], http)
            try:
                await verifier.verify(f"Bearer {tok}", "https://cds.example.org/x")
            except AuthError as exc:
                return exc.category
            return "accepted"

    assert asyncio.run(main()) == "unknown-key"


def test_jwks_has_its_own_http_client(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, require_jwt=True, public_base_url="https://cds.example.org",
                             allowed_fhir_servers="*")
    with TestClient(create_app(settings)) as c:
        runtime = c.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.jwks_http is not None and runtime.jwks_http is not runtime.http
        assert runtime.verifier._http is runtime.jwks_http  # noqa: SLF001


# -------------------------------------------------------------------------------------------- database


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a database behind a dropped route)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        srv.close()


def test_a_blackholed_postgresql_fails_within_the_connect_timeout(blackhole: int) -> None:
    db = Database(f"postgresql+psycopg://mbc@127.0.0.1:{blackhole}/none", DbTimeouts(connect_seconds=1))
    started = time.monotonic()
    assert db.ping() is False
    assert time.monotonic() - started < 5
    db.dispose()


def test_the_replay_check_is_bounded_and_answers_503_with_a_reason(tmp_path: Path, blackhole: int,
                                                                    key: ec.EllipticCurvePrivateKey) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"iss": ISS, "jwks": _jwks(key)}]))
    settings = make_settings(tmp_path, require_jwt=True, clients_file=str(clients), allowed_fhir_servers="*",
                             public_base_url="http://testserver")
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        # connect_timeout far beyond the check's bound: only the bound can answer in time
        hole = Database(f"postgresql+psycopg://mbc@127.0.0.1:{blackhole}/none", DbTimeouts(connect_seconds=60))
        app.state.runtime.verifier.replay_cache = DatabaseReplayCache(hole, timeout=0.5)
        now = int(time.time())
        tok = jwt.encode({"iss": ISS, "aud": f"http://testserver{SERVICE_URL}", "exp": now + 60, "iat": now,
                          "jti": str(uuid.uuid4())}, key, algorithm="ES384", headers={"kid": "k1"})
        started = time.monotonic()
        resp = c.post(SERVICE_URL, json=hook_request(RESOURCES["Patient"] + RESOURCES["Condition"], PID),
                      headers={"Authorization": f"Bearer {tok}"})
        elapsed = time.monotonic() - started
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "auth-unavailable" and resp.json()["reason"] == "replay-cache-timeout"
    assert resp.headers["retry-after"] == "1"
    assert elapsed < 5


def test_replay_cache_timeout_raises_its_own_error(tmp_path: Path, blackhole: int) -> None:
    hole = Database(f"postgresql+psycopg://mbc@127.0.0.1:{blackhole}/none", DbTimeouts(connect_seconds=60))
    with pytest.raises(ReplayCacheUnavailable):
        asyncio.run(DatabaseReplayCache(hole, timeout=0.3).seen("iss", "jti", int(time.time()) + 60))


def test_sqlite_busy_timeout_follows_the_statement_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}", DbTimeouts(statement_seconds=2.5))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    db.dispose()


@pytest.mark.postgres
def test_postgresql_sessions_get_a_statement_timeout() -> None:
    url = pg_url()
    if not url:
        pytest.skip("MBC_CDS_TEST_DATABASE_URL not set")
    db = Database(url, DbTimeouts(statement_seconds=7))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
    db.dispose()


def _record(n: int) -> AuditRecord:
    return AuditRecord(hook_instance=f"spool-{n}", service="svc", patient_hash="h" * 64, rule_ids=("mbc-overview",),
                       card_uuids=((str(uuid.uuid4()), "mbc-overview"),), phase="stable", duration_ms=1.0,
                       status=200, problems=0, created_at=datetime.now(UTC))


def test_audit_rows_are_spooled_while_the_database_is_down_and_written_when_it_is_back(tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "audit.jsonl"
    down = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'down.db'}")
    writer = AuditWriter(down, flush_seconds=0.05, spool=spool)
    writer.start()
    for n in range(30):
        writer.submit(_record(n))
    assert writer.wait_idle()
    writer.stop()
    assert writer.spooled == 30 and writer.dropped == 0
    text = spool.read_text()
    assert text.count("\n") >= 1 and "spool-29" in text

    good = Database(f"sqlite:///{tmp_path / 'good.db'}")
    upgrade(good.url)
    back = AuditWriter(good, flush_seconds=0.05, spool=spool)
    back.start()  # a restart replays the spool first
    back.submit(_record(99))
    assert back.wait_idle()
    back.stop()
    with good.session() as s:
        assert s.scalar(select(func.count()).select_from(Invocation)) == 31
    assert not spool.exists() and not list(spool.parent.glob("*.replay"))


def test_a_full_audit_queue_spools_instead_of_dropping(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    upgrade(db.url)
    writer = AuditWriter(db, spool=tmp_path / "q.jsonl")  # not started: nothing drains the queue
    writer._queue.maxsize = 2  # noqa: SLF001
    for n in range(5):
        writer.submit(_record(n))
    assert writer.spooled == 3 and writer.dropped == 0
    writer.flush()  # writes the two queued rows, then the spooled three
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Invocation)) == 5


def test_a_fhir_server_sending_too_much_is_cut_at_the_prefetch_cap(tmp_path: Path) -> None:
    observations = [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                     "subject": {"reference": f"Patient/{PID}"},
                     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                     "effectiveDateTime": "2026-11-01", "valueQuantity": {"value": 80}} for i in range(300)]
    with running_server() as fhir:
        fhir.resources = {**RESOURCES, "Observation": observations}
        app = create_app(make_settings(tmp_path, max_prefetch_resources=200))
        with TestClient(app) as c:
            app.state.runtime.clock = lambda: NOW
            resp = c.post(SERVICE_URL, json=_hook(fhir.base("ok"), 1))
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    incomplete = [c for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
    assert incomplete and "only the first were read" in incomplete[0].get("detail", "") + incomplete[0]["summary"]
