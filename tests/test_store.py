"""Persistence on SQLite always and on PostgreSQL when MBC_CDS_TEST_DATABASE_URL is set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.store.audit import AuditRecord, AuditWriter, patient_hash
from app.store.db import Database
from app.store.feedback import (
    FeedbackEntry,
    FeedbackRefused,
    feedback_report,
    snooze_report,
    store_feedback,
)
from app.store.models import Feedback, Invocation, IssuedCard, Snooze
from app.store.snoozes import SnoozeIndex
from tests.conftest import migrated_database, pg_url


def _databases(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'store.db'}"]
    if pg_url():
        urls.append(pg_url())  # type: ignore[arg-type]
    return urls


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


def _entry(card: str, outcome: str = "accepted", ts: str = "2026-11-20T10:00:00Z") -> FeedbackEntry:
    return FeedbackEntry(card_uuid=card, outcome=outcome, outcome_timestamp=ts,
                         accepted_suggestions=("s1",) if outcome == "accepted" else (),
                         override_code=None if outcome == "accepted" else "patient-declined",
                         override_display=None, has_comment=False)


def test_migrations_create_and_drop_tables(db: Database) -> None:
    with db.session() as s:
        assert s.execute(text("SELECT COUNT(*) FROM feedback")).scalar() == 0
        assert s.execute(text("SELECT COUNT(*) FROM invocation")).scalar() == 0


def _issue(db: Database, *cards: str, rule: str = "referral-palliative-care", client: str = "ehr-a",
           indicator: str = "info", patient: str = "hash-1") -> None:
    with db.session() as s:
        for card in cards:
            s.add(IssuedCard(uuid=card, rule_id=rule, service="svc", hook_instance="h", created_at=datetime.now(UTC),
                             client=client, patient_hash=patient, indicator=indicator, suggestions=["s1"]))


DAYS = {"already-addressed": 90, "patient-declined": 180, "not-appropriate": 30, "data-wrong": 0}


def _store(db: Database, entries: list[FeedbackEntry], client: str = "ehr-a") -> tuple[int, int]:
    result = store_feedback(db, "svc", entries, client=client, now=NOW, snooze_days=DAYS.__getitem__)
    return result.stored, result.already_stored


NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_feedback_stored_once_and_counted_per_rule(db: Database) -> None:
    _issue(db, "card-1", "card-2")
    assert _store(db, [_entry("card-1")]) == (1, 0)
    assert _store(db, [_entry("card-1")]) == (0, 1)
    assert _store(db, [_entry("card-2", "overridden")]) == (1, 0)
    report = {r["rule"]: r for r in feedback_report(db, "svc")}
    assert report["referral-palliative-care"] == {"rule": "referral-palliative-care", "accepted": 1,
                                                  "overridden": 1}


def test_feedback_refused_for_cards_never_issued_or_issued_to_another_client(db: Database) -> None:
    _issue(db, "card-a", client="ehr-a")
    with pytest.raises(FeedbackRefused) as never:
        _store(db, [_entry("never-issued")])
    assert (never.value.status, never.value.error) == (404, "unknown-card")
    with pytest.raises(FeedbackRefused) as other:
        _store(db, [_entry("card-a")], client="ehr-b")
    assert other.value.status == 404
    # a good entry next to a refused one: nothing is written
    with pytest.raises(FeedbackRefused):
        _store(db, [_entry("card-a"), _entry("never-issued")])
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 0
    assert _store(db, [_entry("card-a")]) == (1, 0)


def test_one_outcome_per_card_and_only_its_own_suggestions(db: Database) -> None:
    _issue(db, "card-1")
    with pytest.raises(FeedbackRefused) as bad:
        _store(db, [FeedbackEntry("card-1", "accepted", "t", ("not-on-this-card",), None, None, False)])
    assert (bad.value.status, bad.value.error) == (409, "unknown-suggestion")
    assert _store(db, [_entry("card-1")]) == (1, 0)
    with pytest.raises(FeedbackRefused) as twice:
        _store(db, [_entry("card-1", "overridden")])
    assert (twice.value.status, twice.value.error) == (409, "outcome-already-recorded")
    report = feedback_report(db, "svc")
    assert report == [{"rule": "referral-palliative-care", "accepted": 1, "overridden": 0}]


def _snoozes_in_table(db: Database) -> SnoozeIndex:
    """What the snooze table holds at NOW, read as a hook reads it (a fresh index, one read of the table)."""
    index = SnoozeIndex(db, clock=lambda: NOW)
    assert index.refresh()
    return index


def test_override_snoozes_the_rule_for_the_patient_for_the_reason_period(db: Database) -> None:
    _issue(db, "declined", rule="referral-palliative-care", patient="p1")
    _issue(db, "wrong", rule="key-worker", patient="p1")
    _issue(db, "other-patient", rule="acp-stable", patient="p2")
    result = store_feedback(db, "svc", [_entry("declined", "overridden")], client="ehr-a", now=NOW,
                            snooze_days=DAYS.__getitem__)
    assert [(z.rule_id, z.reason, z.until) for z in result.snoozed] == [
        ("referral-palliative-care", "patient-declined", NOW + timedelta(days=180))]
    wrong = FeedbackEntry("wrong", "overridden", "t", (), "data-wrong", None, False)
    assert store_feedback(db, "svc", [wrong], client="ehr-a", now=NOW, snooze_days=DAYS.__getitem__).snoozed == []
    stored = _snoozes_in_table(db)
    assert stored.active("p1", NOW) == [("referral-palliative-care", "patient-declined", NOW + timedelta(days=180))]
    assert stored.active("p2", NOW) == []
    assert stored.active("p1", NOW + timedelta(days=181)) == []
    assert snooze_report(db, NOW) == [{"rule": "referral-palliative-care", "reason": "patient-declined",
                                       "patients": 1, "latestUntil": "2027-05-19T10:00:00Z"}]
    with db.session() as s:
        row = s.scalars(select(Snooze)).one()
        # only what is needed: hash, rule, reason, end
        assert {c.name for c in Snooze.__table__.columns} == {"id", "patient_hash", "rule_id", "reason", "until"}
        assert row.patient_hash == "p1"


def test_critical_cards_are_never_snoozed(db: Database) -> None:
    _issue(db, "crit", rule="emergency-spinal-cord-compression", indicator="critical")
    result = store_feedback(db, "svc", [_entry("crit", "overridden")], client="ehr-a", now=NOW,
                            snooze_days=DAYS.__getitem__)
    assert result.stored == 1 and result.snoozed == []
    assert result.not_snoozed and result.not_snoozed[0]["rule"] == "emergency-spinal-cord-compression"
    assert _snoozes_in_table(db).active("hash-1", NOW) == []


def test_feedback_is_all_or_nothing(db: Database) -> None:
    too_long = FeedbackEntry(card_uuid="x" * 500, outcome="accepted", outcome_timestamp="t",
                             accepted_suggestions=(), override_code=None, override_display=None, has_comment=False)
    if db.url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce VARCHAR lengths; the all-or-nothing case is tested on PostgreSQL")
    _issue(db, "good")
    with pytest.raises(Exception):  # noqa: B017 - any database error or refusal
        store_feedback(db, "svc", [_entry("good"), too_long], client="ehr-a")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 0


def test_concurrent_feedback_stores_every_row_once(db: Database) -> None:
    cards = [f"card-{i}" for i in range(100)]
    _issue(db, *cards)
    with ThreadPoolExecutor(max_workers=16) as pool:
        # each card posted twice at once: one row each, no lock errors
        results = list(pool.map(lambda c: _store(db, [_entry(c)]), cards + cards))
    assert sum(r[0] for r in results) == 100
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 100


def test_concurrent_overrides_of_one_card_count_one_outcome_and_one_snooze(db: Database) -> None:
    _issue(db, "one-card")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: _store(db, [_entry("one-card", "overridden")]), range(16)))
    assert sum(r[0] for r in results) == 1 and sum(r[1] for r in results) == 15
    assert feedback_report(db, "svc") == [{"rule": "referral-palliative-care", "accepted": 0, "overridden": 1}]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Snooze)) == 1


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


def test_each_suggestion_of_an_any_card_is_accepted_once(db: Database) -> None:
    with db.session() as s:
        s.add(IssuedCard(uuid="any-card", rule_id="emergency-spinal-cord-compression", service="svc", hook_instance="h",
                         created_at=NOW, client="ehr-a", patient_hash="p", indicator="critical",
                         suggestions=["mri", "oncology", "steroid"]))

    def accept(*ids: str) -> tuple[int, int]:
        return _store(db, [FeedbackEntry("any-card", "accepted", "t", ids, None, None, False)])

    assert accept("mri") == (1, 0)
    assert accept("oncology") == (1, 0)
    assert accept("mri") == (0, 1)
    assert accept("mri", "steroid") == (1, 0)   # only the new suggestion is counted
    with db.session() as s:
        rows = s.scalars(select(Feedback).where(Feedback.card_uuid == "any-card")).all()
        assert sorted(sid for r in rows for sid in r.accepted_suggestions) == ["mri", "oncology", "steroid"]
    with pytest.raises(FeedbackRefused) as refused:
        _store(db, [_entry("any-card", "overridden")])
    assert refused.value.status == 409
