"""Feedback storage (contract v2): accepted only for cards this service issued, from the client that received
them, one outcome per card and suggestion; an override snoozes the rule for the patient. A POST is stored whole
in one transaction or not at all; an identical repeat is idempotent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.store.db import Database
from app.store.models import Feedback, IssuedCard, Snooze
from app.store.snoozes import SnoozeIndex
from plandefinitions.loader import load_artifacts, override_reasons

# The client name for cards issued while JWT verification is off (demo mode).
DEMO_CLIENT = "demo"
# The override reasons every card offers (plandefinitions/CodeSystem-mbc-cds-override-reason.json).
OVERRIDE_CODES = frozenset(r["code"] for r in override_reasons(load_artifacts()))


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...]
    override_code: str | None
    override_display: str | None
    has_comment: bool


@dataclass(frozen=True, slots=True)
class SnoozeMade:
    rule_id: str
    reason: str
    until: datetime
    patient_hash: str


@dataclass
class FeedbackResult:
    stored: int = 0
    already_stored: int = 0
    snoozed: list[SnoozeMade] = field(default_factory=list)
    not_snoozed: list[dict[str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[int]:
        # (stored, already_stored), as callers unpacked it before snoozes existed
        return iter((self.stored, self.already_stored))


class FeedbackRefused(Exception):
    """The whole POST is refused (nothing written): `status` and a JSON `error` code for the route."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def store_feedback(db: Database, service: str, entries: list[FeedbackEntry], *, client: str = DEMO_CLIENT,
                   now: datetime | None = None, snooze_days: Callable[[str], int] | None = None,
                   snoozable: Callable[[str], bool] | None = None,
                   snooze_index: SnoozeIndex | None = None) -> FeedbackResult:
    """Store the entries or refuse them all. Retries when a concurrent POST for the same card wins the race,
    so that exactly one outcome per card is counted. The snoozes made go into `snooze_index` once committed."""
    for attempt in range(3):
        try:
            result = _store(db, service, client, entries, now or datetime.now(UTC), snooze_days, snoozable)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        if snooze_index is not None:
            for z in result.snoozed:
                snooze_index.add(z.patient_hash, z.rule_id, z.reason, z.until)
        return result
    raise RuntimeError("unreachable")


def _store(db: Database, service: str, client: str, entries: list[FeedbackEntry], now: datetime,
           snooze_days: Callable[[str], int] | None, snoozable: Callable[[str], bool] | None) -> FeedbackResult:
    result = FeedbackResult()
    with db.session() as s:
        recorded: dict[str, list[FeedbackEntry]] = {}   # per card: what is stored, before and within this POST
        for e in entries:
            card = s.get(IssuedCard, e.card_uuid)
            # A card never issued, issued by another service or to another client: the same answer, so that a
            # client cannot probe which card uuids exist.
            if card is None or card.service != service or card.client is None or card.client != client:
                raise FeedbackRefused(404, "unknown-card",
                                      f"card {e.card_uuid[:64]!r} was not issued by this service to this client")
            unknown = [sid for sid in e.accepted_suggestions if sid not in (card.suggestions or [])]
            if unknown:
                raise FeedbackRefused(409, "unknown-suggestion",
                                      f"card {e.card_uuid[:64]!r} carried no suggestion {unknown[0][:64]!r}")
            if e.card_uuid not in recorded:
                recorded[e.card_uuid] = [
                    FeedbackEntry(f.card_uuid, f.outcome, f.outcome_timestamp, tuple(f.accepted_suggestions or ()),
                                  f.override_code, f.override_display, f.has_comment)
                    for f in s.scalars(select(Feedback).where(Feedback.service == service,
                                                              Feedback.card_uuid == e.card_uuid))]
            earlier = recorded[e.card_uuid]
            stored = _new_outcome(e, earlier)
            if stored is None:
                result.already_stored += 1
                continue
            earlier.append(stored)
            s.add(Feedback(service=service, card_uuid=e.card_uuid, rule_id=card.rule_id, outcome=e.outcome,
                           override_code=e.override_code, override_display=e.override_display,
                           has_comment=e.has_comment, accepted_suggestions=list(stored.accepted_suggestions),
                           outcome_timestamp=e.outcome_timestamp,
                           outcome_key="|".join(sorted(stored.accepted_suggestions))[:512], received_at=now))
            result.stored += 1
            if e.outcome == "overridden" and (snoozable is None or snoozable(card.rule_id)):
                _snooze(s, card, e, now, snooze_days, result)
        s.flush()
    return result


def _new_outcome(e: FeedbackEntry, earlier: list[FeedbackEntry]) -> FeedbackEntry | None:
    """What this entry adds to the card's outcomes (None: nothing new), or FeedbackRefused when it contradicts
    them. One override per card; each suggestion accepted once; a card is either accepted or overridden."""
    other = "accepted" if e.outcome == "overridden" else "overridden"
    if any(f.outcome == other for f in earlier):
        raise FeedbackRefused(409, "outcome-already-recorded",
                              f"card {e.card_uuid[:64]!r} is already {other}; one outcome per card and suggestion "
                              "is counted")
    if e.outcome == "overridden":
        previous = next((f for f in earlier if f.outcome == "overridden"), None)
        if previous is None:
            return e
        if previous.override_code != e.override_code:
            raise FeedbackRefused(409, "outcome-already-recorded",
                                  f"card {e.card_uuid[:64]!r} was already overridden with another reason")
        return None
    accepted = {sid for f in earlier for sid in f.accepted_suggestions}
    new = tuple(sid for sid in dict.fromkeys(e.accepted_suggestions) if sid not in accepted)
    if not new:
        return None
    return FeedbackEntry(e.card_uuid, e.outcome, e.outcome_timestamp, new, e.override_code, e.override_display,
                         e.has_comment)


def _snooze(s: Session, card: IssuedCard, e: FeedbackEntry, now: datetime,
            snooze_days: Callable[[str], int] | None, result: FeedbackResult) -> None:
    reason = e.override_code or ""
    if reason not in OVERRIDE_CODES:
        return
    if card.indicator == "critical":
        result.not_snoozed.append({"card": card.uuid, "rule": card.rule_id,
                                   "reason": "critical cards are never snoozed"})
        return
    days = snooze_days(reason) if snooze_days else 0
    if days <= 0 or not card.patient_hash:
        return
    until = now + timedelta(days=days)
    s.add(Snooze(patient_hash=card.patient_hash, rule_id=card.rule_id, reason=reason, until=until))
    result.snoozed.append(SnoozeMade(card.rule_id, reason, until, card.patient_hash))


def feedback_report(db: Database, service: str | None = None) -> list[dict[str, object]]:
    """Accept / override counts per rule (one outcome per card)."""
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


def snooze_report(db: Database, now: datetime | None = None) -> list[dict[str, object]]:
    """Active snoozes per rule and reason: how many patients, until when at the latest (no patient hashes)."""
    now = now or datetime.now(UTC)
    with db.session() as s:
        rows = s.execute(select(Snooze.rule_id, Snooze.reason, func.count(func.distinct(Snooze.patient_hash)),
                                func.max(Snooze.until))
                         .where(Snooze.until > now).group_by(Snooze.rule_id, Snooze.reason)).all()
    out = []
    for rule_id, reason, patients, until in rows:
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
        out.append({"rule": rule_id, "reason": reason, "patients": int(patients),
                    "latestUntil": until.isoformat().replace("+00:00", "Z")})
    return sorted(out, key=lambda r: (str(r["rule"]), str(r["reason"])))
