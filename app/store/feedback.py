"""Feedback storage: a POST is stored whole in one transaction or not at all; repeats are idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.store.db import Database
from app.store.models import Feedback, IssuedCard


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...]
    override_code: str | None
    override_display: str | None
    has_comment: bool


def store_feedback(db: Database, service: str, entries: list[FeedbackEntry]) -> tuple[int, int]:
    """Returns (stored, already_present). Retries once when a concurrent duplicate wins the race."""
    for attempt in range(3):
        try:
            return _store(db, service, entries)
        except IntegrityError:
            if attempt == 2:
                raise
    raise RuntimeError("unreachable")


def _store(db: Database, service: str, entries: list[FeedbackEntry]) -> tuple[int, int]:
    stored = present = 0
    received = datetime.now(UTC)
    with db.session() as s:
        seen: set[tuple[str, str, str]] = set()
        for e in entries:
            key = (e.card_uuid, e.outcome, e.outcome_timestamp)
            if key in seen:
                present += 1
                continue
            seen.add(key)
            exists = s.scalar(select(Feedback.id).where(
                Feedback.service == service, Feedback.card_uuid == e.card_uuid, Feedback.outcome == e.outcome,
                Feedback.outcome_timestamp == e.outcome_timestamp))
            if exists is not None:
                present += 1
                continue
            rule_id = s.scalar(select(IssuedCard.rule_id).where(IssuedCard.uuid == e.card_uuid))
            s.add(Feedback(service=service, card_uuid=e.card_uuid, rule_id=rule_id, outcome=e.outcome,
                           override_code=e.override_code, override_display=e.override_display,
                           has_comment=e.has_comment, accepted_suggestions=list(e.accepted_suggestions),
                           outcome_timestamp=e.outcome_timestamp, received_at=received))
            stored += 1
    return stored, present


def feedback_report(db: Database, service: str | None = None) -> list[dict[str, object]]:
    """Accept / override counts per rule (rule 'unknown' when the card was not issued by this database)."""
    with db.session() as s:
        q = select(Feedback.rule_id, Feedback.outcome, func.count()).group_by(Feedback.rule_id, Feedback.outcome)
        if service:
            q = q.where(Feedback.service == service)
        rows = s.execute(q).all()
    report: dict[str, dict[str, object]] = {}
    for rule_id, outcome, count in rows:
        item = report.setdefault(rule_id or "unknown", {"rule": rule_id or "unknown", "accepted": 0,
                                                         "overridden": 0})
        item[outcome] = int(count)
    return sorted(report.values(), key=lambda r: str(r["rule"]))
