"""Persistence on SQLite always and on PostgreSQL when MBC_CDS_TEST_DATABASE_URL is set."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.store.audit import AuditRecord, AuditWriter, patient_hash
from app.store.db import Database
from app.store.feedback import FeedbackEntry, feedback_report, store_feedback
from app.store.migrate import downgrade, upgrade
from app.store.models import Feedback, Invocation, IssuedCard
from tests.conftest import pg_url


def _databases(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'store.db'}"]
    if pg_url():
        urls.append(pg_url())  # type: ignore[arg-type]
    return urls


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = pg_url() or ""
        if not url:
            pytest.skip("MBC_CDS_TEST_DATABASE_URL not set: PostgreSQL tests skipped")
    database = Database(url)
    if request.param == "postgresql":
        # A clean schema each test: drop what an earlier run left.
        downgrade(database.url)
    upgrade(database.url)
    yield database
    if request.param == "postgresql":
        downgrade(database.url)
    database.dispose()


def _entry(card: str, outcome: str = "accepted", ts: str = "2026-11-20T10:00:00Z") -> FeedbackEntry:
    return FeedbackEntry(card_uuid=card, outcome=outcome, outcome_timestamp=ts,
                         accepted_suggestions=("s1",) if outcome == "accepted" else (),
                         override_code=None if outcome == "accepted" else "patient-declined",
                         override_display=None, has_comment=False)


def test_migrations_create_and_drop_tables(db: Database) -> None:
    with db.session() as s:
        assert s.execute(text("SELECT COUNT(*) FROM feedback")).scalar() == 0
        assert s.execute(text("SELECT COUNT(*) FROM invocation")).scalar() == 0


def test_feedback_stored_once_and_counted_per_rule(db: Database) -> None:
    with db.session() as s:
        s.add(IssuedCard(uuid="card-1", rule_id="referral-palliative-care", service="svc", hook_instance="h",
                         created_at=datetime.now(UTC)))
    assert store_feedback(db, "svc", [_entry("card-1")]) == (1, 0)
    assert store_feedback(db, "svc", [_entry("card-1")]) == (0, 1)
    assert store_feedback(db, "svc", [_entry("card-2", "overridden")]) == (1, 0)
    report = {r["rule"]: r for r in feedback_report(db, "svc")}
    assert report["referral-palliative-care"]["accepted"] == 1
    assert report["unknown"]["overridden"] == 1


def test_feedback_is_all_or_nothing(db: Database) -> None:
    too_long = FeedbackEntry(card_uuid="x" * 500, outcome="accepted", outcome_timestamp="t",
                             accepted_suggestions=(), override_code=None, override_display=None, has_comment=False)
    if db.url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce VARCHAR lengths; the all-or-nothing case is tested on PostgreSQL")
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store_feedback(db, "svc", [_entry("good"), too_long])
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 0


def test_concurrent_feedback_stores_every_row_once(db: Database) -> None:
    cards = [f"card-{i}" for i in range(100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        # each card posted twice at once: one row each, no lock errors
        results = list(pool.map(lambda c: store_feedback(db, "svc", [_entry(c)]), cards + cards))
    assert sum(r[0] for r in results) == 100
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 100


def test_audit_writer_batches_rows_without_patient_ids(db: Database) -> None:
    writer = AuditWriter(db, flush_seconds=0.05)
    writer.start()
    hashed = patient_hash("patient-123", "salt")
    assert "patient-123" not in hashed
    for _ in range(50):
        writer.submit(AuditRecord(hook_instance=str(uuid.uuid4()), service="svc", patient_hash=hashed,
                                  rule_ids=("mbc-overview",), card_uuids=((str(uuid.uuid4()), "mbc-overview"),),
                                  phase="stable", duration_ms=1.5, status=200, problems=0,
                                  created_at=datetime.now(UTC)))
    writer.stop()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Invocation)) == 50
        assert s.scalar(select(func.count()).select_from(IssuedCard)) == 50
        row = s.scalars(select(Invocation)).first()
        assert row is not None and row.patient_hash == hashed and row.rule_ids == ["mbc-overview"]


def test_ready_reports_unreachable_database(tmp_path: Path) -> None:
    bad = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert bad.ping() is False
