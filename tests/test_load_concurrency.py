"""Load against a real server: uvicorn with 2 worker processes (JWT off), on SQLite and on PostgreSQL.

200 concurrent hook calls, then 200 concurrent feedback posts (some of them the same feedback twice, at the
same moment): no errors, every feedback row stored exactly once, every hook audited once, no database lock
failures in the server's output, and no access token or patient id in it either."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.store.db import Database
from app.store.migrate import downgrade, upgrade
from app.store.models import Feedback, Invocation
from tests.conftest import SERVICE_URL, hook_request, pg_url
from tests.served_app import free_port

ROOT = Path(__file__).resolve().parents[1]
HOOKS = 200
FEEDBACK_POSTS = 200
DUPLICATES = 40  # of the feedback posts, this many repeat another one (sent concurrently with it)
ACCESS_TOKEN = "load-test-secret-token-0815"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}


def patient(pid: str) -> list[dict[str, Any]]:
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-02"},
        {"resourceType": "Condition", "id": f"{pid}-breast", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": ACTIVE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
         "onsetDateTime": "2023-02-01"},
        {"resourceType": "Condition", "id": f"{pid}-bone", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": ACTIVE,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.51"}]},
         "onsetDateTime": "2026-05-10"},
        {"resourceType": "Observation", "id": f"{pid}-pain", "status": "final",
         "subject": {"reference": f"Patient/{pid}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
         "effectiveDateTime": "2026-11-18", "valueQuantity": {"value": 7, "unit": "{score}"}},
    ]


class Server:
    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "MBC_CDS_DATABASE_URL": database_url, "MBC_CDS_REQUIRE_JWT": "false",
               "MBC_CDS_AUDIT_SALT": "load-test-salt", "MBC_CDS_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "2", "--log-level", "info"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        ready = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    ready += 1
                    if ready >= 4:  # several answers in a row: both workers are likely up
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: workers flush their audit queues
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def _database_urls() -> list[Any]:
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=_database_urls())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'load.db'}"
    else:
        url = pg_url() or ""
        if not url:
            pytest.skip("MBC_CDS_TEST_DATABASE_URL not set: PostgreSQL load test skipped")
    db = Database(url)
    if request.param == "postgresql":
        downgrade(db.url)  # a clean schema: drop what an earlier run left
    upgrade(db.url)
    yield db
    if request.param == "postgresql":
        downgrade(db.url)
    db.dispose()


def _count(db: Database, column: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count(column))) or 0)


async def _hooks(base: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=HOOKS, max_keepalive_connections=HOOKS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        bodies = []
        for i in range(HOOKS):
            body = hook_request(patient(f"load-pat-{i:03d}"), f"load-pat-{i:03d}",
                                hookInstance=f"0a0b0c0d-{i:04d}-4c1e-9a42-1f0d0e3c4a11")
            # a token the service must never print; every prefetch key is sent, so the server is not called
            body["fhirServer"] = "http://127.0.0.1:9/fhir"
            body["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer",
                                         "expires_in": 300, "scope": "patient/*.read", "subject": "mbc-cds"}
            bodies.append(body)
        return list(await asyncio.gather(*(client.post(SERVICE_URL, json=b) for b in bodies)))


async def _feedback(base: str, posts: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(posts), max_keepalive_connections=len(posts))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(f"{SERVICE_URL}/feedback", json=p) for p in posts)))


def test_concurrent_hooks_and_feedback(database: Database, tmp_path: Path) -> None:
    server = Server(database.url, tmp_path / "server.log")
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        server.wait_ready()
        timings["start"] = time.monotonic() - t0

        t0 = time.monotonic()
        hooks = asyncio.run(_hooks(server.url))
        timings["hooks"] = time.monotonic() - t0
        statuses = [r.status_code for r in hooks]
        assert statuses.count(200) == HOOKS, {s: statuses.count(s) for s in set(statuses)}
        cards = [r.json()["cards"] for r in hooks]
        assert all(cards), "every patient gets cards"
        card_ids = [c[0]["uuid"] for c in cards]
        assert len(set(card_ids)) == HOOKS

        distinct = FEEDBACK_POSTS - DUPLICATES
        posts = []
        for i in range(FEEDBACK_POSTS):
            card = card_ids[i % distinct]  # the last DUPLICATES posts repeat the first ones
            posts.append({"feedback": [{"card": card, "outcome": "overridden",
                                        "outcomeTimestamp": "2026-11-20T10:05:00Z",
                                        "overrideReason": {"reason": {"code": "patient-declined",
                                                                      "display": "Patient declined"}}}]})
        t0 = time.monotonic()
        responses = asyncio.run(_feedback(server.url, posts))
        timings["feedback"] = time.monotonic() - t0
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == FEEDBACK_POSTS, [r.text for r in responses if r.status_code != 200][:3]
        stored = sum(r.json()["stored"] for r in responses)
        already = sum(r.json()["alreadyStored"] for r in responses)
        assert stored == distinct and stored + already == FEEDBACK_POSTS

        assert _count(database, Feedback.id) == distinct  # exactly once each
        with database.session() as s:
            cards_with_feedback = s.scalars(select(Feedback.card_uuid)).all()
        assert sorted(cards_with_feedback) == sorted(card_ids[:distinct])
    finally:
        server.stop()

    # every hook audited exactly once (the workers flush their audit queues on shutdown)
    assert _count(database, Invocation.id) == HOOKS
    output = server.output()
    for bad in ("database is locked", "OperationalError", "IntegrityError", "unhandled error", "Traceback",
                '" 500', '" 503'):
        assert bad not in output, f"{bad!r} in the server output"
    assert ACCESS_TOKEN not in output
    assert "load-pat-" not in output  # patient ids
    print(f"\nload ({database.url.split(':')[0]}): start {timings['start']:.1f} s, {HOOKS} hooks "
          f"{timings['hooks']:.2f} s, {FEEDBACK_POSTS} feedback posts {timings['feedback']:.2f} s")


MIGRATE = """
import sys, time
from app.store.migrate import upgrade_at_start
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
upgrade_at_start(sys.argv[1])
"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_workers_migrate_a_fresh_database_at_the_same_moment(kind: str, tmp_path: Path) -> None:
    """uvicorn --workers N on a fresh database: every worker migrates at start-up; none may crash."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = pg_url() or ""
        if not url:
            pytest.skip("MBC_CDS_TEST_DATABASE_URL not set: PostgreSQL test skipped")
        downgrade(url)
    start_at = str(time.time() + 2.0)  # after the imports, all at once
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url, start_at], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0].decode(errors="replace") for p in procs]
    try:
        assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(o[-1500:] for o in outputs)
        db = Database(url)
        assert _count(db, Feedback.id) == 0  # the schema is there
        db.dispose()
    finally:
        if kind == "postgresql":
            downgrade(url)
