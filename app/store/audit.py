"""Audit rows are written by one background thread in batches, so the EHR never waits for the database."""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.store.db import Database
from app.store.models import Invocation, IssuedCard

log = logging.getLogger("mbc_cds.audit")


def patient_hash(patient_id: str, salt: str) -> str:
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    hook_instance: str
    service: str
    patient_hash: str
    rule_ids: tuple[str, ...]
    card_uuids: tuple[tuple[str, str], ...]   # (card uuid, rule id)
    phase: str | None
    duration_ms: float
    status: int
    problems: int
    created_at: datetime
    client: str | None = None                                   # JWT iss (the demo client when JWT is off)
    card_details: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (card uuid, indicator, suggestion uuids)


class AuditWriter:
    def __init__(self, db: Database, batch_size: int = 200, flush_seconds: float = 0.2,
                 batch_window: float = 0.05) -> None:
        self.db = db
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.batch_window = batch_window
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(maxsize=100_000)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self._submitted = 0
        self._done = 0
        self._idle = threading.Condition()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def submit(self, record: AuditRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return
        with self._idle:
            self._submitted += 1

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted record is written (tests, shutdown). True when idle."""
        if self._thread is None:
            self.flush()
        with self._idle:
            return self._idle.wait_for(lambda: self._done >= self._submitted, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued so far (tests and shutdown).

        With the writer thread running, wait until it has written every record submitted before this call
        (it may hold a batch it already took off the queue); without it, write the queue here.
        """
        if self._thread is not None and self._thread.is_alive():
            deadline = time.monotonic() + timeout
            with self._queue.all_tasks_done:
                while self._queue.unfinished_tasks:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._queue.all_tasks_done.wait(remaining)
            return
        batch: list[AuditRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is not None:
                batch.append(item)
        if batch:
            self._write(batch)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                continue
            if item is None:
                self._queue.task_done()
                self._drain_and_write([])
                return
            batch = [item]
            stop = False
            # Gather what arrives in the next few ms: one transaction per batch instead of one per hook keeps
            # the writer's share of the CPU (and of the GIL) small under steady traffic.
            if self.batch_window > 0:
                time.sleep(self.batch_window)
            while len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.task_done()
                    stop = True
                    break
                batch.append(nxt)
            if stop:
                self._drain_and_write(batch)
                return
            self._write_and_done(batch)

    def _drain_and_write(self, batch: list[AuditRecord]) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
            else:
                batch.append(item)
        self._write_and_done(batch)

    def _write_and_done(self, batch: list[AuditRecord]) -> None:
        try:
            if batch:
                self._write(batch)
        finally:
            for _ in batch:
                self._queue.task_done()

    def _write(self, batch: list[AuditRecord]) -> None:
        try:
            self._write_rows(batch)
        finally:
            with self._idle:
                self._done += len(batch)
                self._idle.notify_all()

    def _write_rows(self, batch: list[AuditRecord]) -> None:
        # Two executemany INSERTs (Core, not ORM): the writer shares the GIL with request handling, and ORM
        # objects plus one SELECT per card (merge) cost ~3 ms per hook in the benchmark (bench/RESULTS.md).
        insert = sqlite_insert if self.db.engine.dialect.name == "sqlite" else pg_insert
        invocations = [{"hook_instance": r.hook_instance[:128], "service": r.service, "patient_hash": r.patient_hash,
                        "rule_ids": list(r.rule_ids), "card_count": len(r.card_uuids), "phase": r.phase,
                        "duration_ms": r.duration_ms, "status": r.status, "problems": r.problems,
                        "created_at": r.created_at} for r in batch]
        cards = list({u: _card_row(r, u, rule) for r in batch for u, rule in r.card_uuids}.values())
        try:
            with self.db.engine.begin() as conn:
                conn.execute(insert(Invocation.__table__), invocations)
                if cards:
                    # A repeated hookInstance gives the same card uuids: the first issue stands.
                    conn.execute(insert(IssuedCard.__table__).on_conflict_do_nothing(index_elements=["uuid"]), cards)
        except Exception:  # noqa: BLE001 - auditing must never take the service down
            log.exception("audit batch of %d rows could not be written", len(batch))


def _card_row(r: AuditRecord, card_uuid: str, rule: str) -> dict[str, object]:
    details = {u: (indicator, suggestions) for u, indicator, suggestions in r.card_details}
    indicator, suggestions = details.get(card_uuid, (None, ()))
    # Every key in every row: executemany needs one shape for the whole batch.
    return {"uuid": card_uuid, "rule_id": rule, "service": r.service, "hook_instance": r.hook_instance[:128],
            "created_at": r.created_at, "client": r.client[:256] if r.client else None,
            "patient_hash": r.patient_hash, "indicator": indicator, "suggestions": list(suggestions)}


def now_utc() -> datetime:
    return datetime.now(UTC)
