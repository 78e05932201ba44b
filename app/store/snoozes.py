"""Every active snooze, held in memory by each worker, so that a hook reads its patient's snoozes without a
database round trip (a thread hop plus a query was the largest cost of a typical hook: bench/RESULTS.md).

How current the index is:

- in this worker, exact: a snooze stored through `store_feedback(..., snooze_index=...)` is added as soon as its
  transaction commits, so the next hook here is silenced;
- across workers, within `refresh_seconds` (default 1 s): a background thread reads a fingerprint of the snooze
  table (row count, highest id, sum of ids) and reloads the active snoozes when it changed, so an override
  stored by another worker silences the card here within that time;
- when the table could not be read for `stale_seconds` (default 5 s; a database fault, or never since start-up),
  the index answers None and the hook shows every card, as it did when its own query failed: a snooze is applied
  only from what the table said within the last `stale_seconds`.

Only what the snooze table holds is kept (salted patient hash, rule id, reason code, end): no patient data.
Critical cards are never snoozed; the engine decides that per card, whatever the index holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select

from app.store.db import Database
from app.store.models import Snooze

log = logging.getLogger("mbc_cds.snoozes")

# (rule id, reason code, until) per rule, the latest end
SnoozeRow = tuple[str, str, datetime]
_Entries = dict[str, dict[str, tuple[str, datetime]]]   # patient hash -> rule id -> (reason, until)


def _aware(when: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _merge(entries: _Entries, patient_hash: str, rule_id: str, reason: str, until: datetime) -> None:
    rules = entries.setdefault(patient_hash, {})
    current = rules.get(rule_id)
    if current is None or until > current[1]:
        rules[rule_id] = (reason, until)


class SnoozeIndex:
    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC), *,
                 refresh_seconds: float = 1.0, stale_seconds: float = 5.0) -> None:
        self.db = db
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.stale_seconds = stale_seconds
        self._entries: _Entries = {}
        self._fingerprint: tuple[int, int, int] | None = None
        self._checked_at: float | None = None  # time.monotonic() of the last successful read of the table
        # Snoozes added here since the reload in progress began: merged into what it read (it may have
        # started before their commit), so that a reload never drops a snooze this worker just stored.
        self._added: list[tuple[str, str, str, datetime]] = []
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one reload at a time: each owns the snoozes added during its read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Read the table once now (a failure leaves the index stale: every card shows), then keep it current."""
        self.refresh()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="snooze-index", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None

    def active(self, patient_hash: str, now: datetime) -> list[SnoozeRow] | None:
        """(rule id, reason, until) of this patient's snoozes still running at `now`; None when the table could
        not be read recently (the caller then snoozes nothing)."""
        checked = self._checked_at
        if checked is None or time.monotonic() - checked > self.stale_seconds:
            return None
        rules = self._entries.get(patient_hash)
        if not rules:
            return []
        return [(rule_id, reason, until) for rule_id, (reason, until) in rules.items() if until > now]

    def add(self, patient_hash: str, rule_id: str, reason: str, until: datetime) -> None:
        """A snooze this worker has just committed."""
        until = _aware(until)
        with self._lock:
            _merge(self._entries, patient_hash, rule_id, reason, until)
            self._added.append((patient_hash, rule_id, reason, until))

    def refresh(self) -> bool:
        """Reload the active snoozes if the table changed since the last read. False when it could not be read."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        with self._lock:
            mark = len(self._added)
        try:
            with self.db.engine.connect() as conn:
                count, top, total = conn.execute(
                    select(func.count(), func.max(Snooze.id), func.sum(Snooze.id))).one()
                fingerprint = (int(count or 0), int(top or 0), int(total or 0))
                rows = None
                if fingerprint != self._fingerprint:
                    rows = conn.execute(select(Snooze.patient_hash, Snooze.rule_id, Snooze.reason, Snooze.until)
                                        .where(Snooze.until > self.clock())).all()
        except Exception as exc:  # noqa: BLE001 - any failure to read leaves the index to go stale
            if not self._failing:
                log.warning("snoozes could not be read; no rule is snoozed once the index is stale",
                            extra={"exc_type": type(exc).__name__, "stale_seconds": self.stale_seconds})
            self._failing = True
            return False
        entries: _Entries | None = None
        if rows is not None:
            entries = {}
            for patient_hash, rule_id, reason, until in rows:
                _merge(entries, patient_hash, rule_id, reason, _aware(until))
        with self._lock:
            if entries is not None:
                for added in self._added[mark:]:
                    _merge(entries, *added)
                self._entries = entries
            del self._added[:mark]
            self._fingerprint = fingerprint
            self._checked_at = time.monotonic()
        if self._failing:
            log.info("snoozes readable again")
            self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()
