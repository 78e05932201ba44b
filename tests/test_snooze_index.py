"""The per-worker snooze index (app/store/snoozes.py): exact in the worker that stores an override, current in
another worker after its next refresh, and never a silence from data it cannot confirm (a database fault shows
every card). SQLite always, PostgreSQL when MBC_CDS_TEST_DATABASE_URL is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.store.db import Database
from app.store.feedback import FeedbackEntry, store_feedback
from app.store.models import IssuedCard, Snooze
from app.store.snoozes import SnoozeIndex
from tests.conftest import NOW, SERVICE_URL, hook_request, make_settings, migrated_database
from tests.test_api import PID, bone_patient

DAYS = {"already-addressed": 90, "patient-declined": 180, "not-appropriate": 30, "data-wrong": 0}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


def _issue(db: Database, card: str, patient: str, rule: str = "referral-palliative-care") -> None:
    with db.session() as s:
        s.add(IssuedCard(uuid=card, rule_id=rule, service="svc", hook_instance="h", created_at=NOW, client="ehr-a",
                         patient_hash=patient, indicator="info", suggestions=[]))


def _override(db: Database, card: str, index: SnoozeIndex | None, reason: str = "patient-declined") -> None:
    entry = FeedbackEntry(card_uuid=card, outcome="overridden", outcome_timestamp="2026-11-20T10:00:00Z",
                          accepted_suggestions=(), override_code=reason, override_display=None, has_comment=False)
    result = store_feedback(db, "svc", [entry], client="ehr-a", now=NOW, snooze_days=DAYS.__getitem__,
                            snooze_index=index)
    assert result.snoozed


def _index(db: Database, **kwargs: Any) -> SnoozeIndex:
    index = SnoozeIndex(db, lambda: NOW, **kwargs)
    assert index.refresh()
    return index


def test_an_override_is_in_the_storing_workers_index_at_once(db: Database) -> None:
    index = _index(db)
    _issue(db, "card-1", "hash-1")
    _override(db, "card-1", index)
    until = NOW + timedelta(days=180)
    assert index.active("hash-1", NOW) == [("referral-palliative-care", "patient-declined", until)]
    assert index.active("hash-2", NOW) == []
    assert index.active("hash-1", until) == []  # ended


def test_another_worker_sees_the_override_after_its_refresh(db: Database) -> None:
    a, b = _index(db), _index(db)
    _issue(db, "card-1", "hash-1")
    _override(db, "card-1", a)
    assert b.active("hash-1", NOW) == []  # not yet: B has not looked at the table since
    assert b.refresh()
    assert [rule for rule, _reason, _until in b.active("hash-1", NOW) or []] == ["referral-palliative-care"]


def test_the_background_refresh_brings_another_workers_override(db: Database) -> None:
    b = SnoozeIndex(db, lambda: NOW, refresh_seconds=0.05)
    b.start()
    try:
        _issue(db, "card-1", "hash-1")
        _override(db, "card-1", None)  # stored by another worker
        deadline = time.monotonic() + 10
        while not b.active("hash-1", NOW) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [rule for rule, _reason, _until in b.active("hash-1", NOW) or []] == ["referral-palliative-care"]
    finally:
        b.stop()


def test_the_latest_end_per_rule_counts_and_ended_snoozes_are_not_loaded(db: Database) -> None:
    with db.session() as s:
        s.add_all([Snooze(patient_hash="h", rule_id="r", reason="not-appropriate", until=NOW + timedelta(days=30)),
                   Snooze(patient_hash="h", rule_id="r", reason="patient-declined", until=NOW + timedelta(days=180)),
                   Snooze(patient_hash="h", rule_id="old", reason="not-appropriate", until=NOW - timedelta(days=1))])
    index = _index(db)
    assert index.active("h", NOW) == [("r", "patient-declined", NOW + timedelta(days=180))]


def test_a_snooze_stored_while_a_reload_reads_the_table_is_kept(db: Database) -> None:
    index = _index(db)
    with db.session() as s:  # another worker's snooze: the next refresh reloads
        s.add(Snooze(patient_hash="h-other", rule_id="r", reason="not-appropriate", until=NOW + timedelta(days=30)))
    real_connect = db.engine.connect

    @contextmanager
    def connect_then_store() -> Iterator[Any]:
        with real_connect() as conn:
            # committed here after the reload's snapshot began (the reload cannot see it in the table)
            index.add("h-mine", "acp-revisit", "already-addressed", NOW + timedelta(days=90))
            yield conn

    engine = db.engine
    db.engine = type("Engine", (), {"connect": staticmethod(connect_then_store)})()  # type: ignore[assignment]
    try:
        assert index.refresh()
    finally:
        db.engine = engine
    assert [r for r, _reason, _until in index.active("h-other", NOW) or []] == ["r"]
    assert [r for r, _reason, _until in index.active("h-mine", NOW) or []] == ["acp-revisit"]


def test_an_index_that_cannot_read_the_table_snoozes_nothing(tmp_path: Path) -> None:
    down = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'down.db'}")
    never = SnoozeIndex(down, lambda: NOW)
    assert never.refresh() is False
    assert never.active("h", NOW) is None  # never read: unknown, not "none"
    down.dispose()


def test_a_stale_index_answers_unknown(db: Database) -> None:
    index = _index(db, stale_seconds=0.05)
    _issue(db, "card-1", "hash-1")
    _override(db, "card-1", index)
    assert index.active("hash-1", NOW)
    time.sleep(0.1)  # no refresh since: the index no longer vouches for what it holds
    assert index.active("hash-1", NOW) is None


# ------------------------------------------------------------------------------------------ through the app


def _rules(c: TestClient, hook_instance: str) -> list[str]:
    resp = c.post(SERVICE_URL, json=hook_request(bone_patient(), PID, hookInstance=hook_instance))
    assert resp.status_code == 200, resp.text
    return [card["source"]["topic"]["code"] for card in resp.json()["cards"]]


def _override_card(c: TestClient, hook_instance: str, rule: str) -> None:
    cards = c.post(SERVICE_URL, json=hook_request(bone_patient(), PID, hookInstance=hook_instance)).json()["cards"]
    card = next(x for x in cards if x["source"]["topic"]["code"] == rule)
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:05:00Z",
                        "overrideReason": {"reason": {"code": "patient-declined", "display": "Patient declined"}}}]}
    resp = c.post(f"{SERVICE_URL}/feedback", json=fb)
    assert resp.status_code == 200 and resp.json()["snoozed"], resp.text


@contextmanager
def _worker(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path))
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
        yield c


def test_an_override_in_one_worker_silences_the_card_in_another_after_its_refresh(tmp_path: Path) -> None:
    with _worker(tmp_path) as first, _worker(tmp_path) as second:
        assert "referral-palliative-care" in _rules(second, "h0")  # before: shown in both workers
        _override_card(first, "h1", "referral-palliative-care")
        assert "referral-palliative-care" not in _rules(first, "h2")  # the storing worker: at once
        assert second.app.state.runtime.snoozes.refresh()  # type: ignore[attr-defined]
        assert "referral-palliative-care" not in _rules(second, "h3")


def test_a_database_fault_shows_every_card_again(tmp_path: Path) -> None:
    with _worker(tmp_path) as c:
        _override_card(c, "h1", "referral-palliative-care")
        assert "referral-palliative-care" not in _rules(c, "h2")
        index = c.app.state.runtime.snoozes  # type: ignore[attr-defined]
        index.stop()  # no background refresh: this test drives it
        index.db = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'down.db'}")
        index.stale_seconds = 0.0
        assert index.refresh() is False
        # the snooze is still in memory, but the service cannot confirm it: every card shows, the hook answers
        assert "referral-palliative-care" in _rules(c, "h3")
