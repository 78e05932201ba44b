"""Audit rows are written by one background thread in batches, so the EHR never waits for the database.

A batch the database refuses (down, blackholed past the timeouts, locked) is spooled to a local file and
written when the database answers again (app/store/spool.py): audit rows are never silently lost.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.store.db import Database
from app.store.models import Invocation, IssuedCard
from app.store.spool import AuditSpool

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

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuditRecord:
        created = row["created_at"]
        return cls(**{**row, "rule_ids": tuple(row["rule_ids"]),
                      "card_uuids": tuple((u, r) for u, r in row["card_uuids"]),
                      "card_details": tuple((u, i, tuple(s)) for u, i, s in row.get("card_details", ())),
                      "created_at": datetime.fromisoformat(created) if isinstance(created, str) else created})


class AuditWriter:
    def __init__(self, db: Database, batch_size: int = 200, flush_seconds: float = 0.2,
                 batch_window: float = 0.05, spool: str | Path | None = None, retry_seconds: float = 5.0) -> None:
        self.db = db
        self.spool = AuditSpool(spool) if spool else None
        self.retry_seconds = retry_seconds
        self._last_retry = 0.0
        self.spooled = 0
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
            # The writer is far behind (the database is slow): straight to the spool, one small append.
            if self.spool is not None and self.spool.append([record.to_row()]):
                self.spooled += 1
            else:
                self.dropped += 1
                log.error("audit queue full and no spool: row lost", extra={"dropped": self.dropped})
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
        self._retry_spool()
        while True:
            try:
                item = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                if time.monotonic() - self._last_retry > self.retry_seconds:
                    self._retry_spool()
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
        try:
            self._insert(batch)
        except Exception as exc:  # noqa: BLE001 - auditing must never take the service down
            if self.spool is not None and self.spool.append(r.to_row() for r in batch):
                self.spooled += len(batch)
                log.error("audit batch could not be written: spooled", extra={
                    "rows": len(batch), "exc_type": type(exc).__name__})
            else:
                self.dropped += len(batch)
                log.error("audit batch could not be written: rows lost", extra={
                    "rows": len(batch), "exc_type": type(exc).__name__})
            return
        # A plain stat per batch; orphaned replay files are looked for at start and on the idle retry only.
        if self.spool is not None and self.spool.path.exists():
            self._retry_spool()

    def _insert(self, batch: list[AuditRecord]) -> None:
        # Two executemany INSERTs (Core, not ORM): the writer shares the GIL with request handling, and ORM
        # objects plus one SELECT per card (merge) cost ~3 ms per hook in the benchmark (bench/RESULTS.md).
        insert = sqlite_insert if self.db.engine.dialect.name == "sqlite" else pg_insert
        invocations = [{"hook_instance": r.hook_instance[:128], "service": r.service, "patient_hash": r.patient_hash,
                        "rule_ids": list(r.rule_ids), "card_count": len(r.card_uuids), "phase": r.phase,
                        "duration_ms": r.duration_ms, "status": r.status, "problems": r.problems,
                        "created_at": r.created_at} for r in batch]
        cards = list({u: _card_row(r, u, rule) for r in batch for u, rule in r.card_uuids}.values())
        with self.db.engine.begin() as conn:
            conn.execute(insert(Invocation.__table__), invocations)
            if cards:
                # A repeated hookInstance gives the same card uuids: the first issue stands.
                conn.execute(insert(IssuedCard.__table__).on_conflict_do_nothing(index_elements=["uuid"]), cards)

    def _retry_spool(self) -> None:
        """Write what earlier failures spooled, now that (or if) the database answers."""
        self._last_retry = time.monotonic()
        if self.spool is None or not self.spool.pending():
            return
        try:
            count = self.spool.replay(self._replay_rows)
        except Exception as exc:  # noqa: BLE001 - still down: retried later
            log.warning("audit spool not written yet", extra={"exc_type": type(exc).__name__})
            return
        if count:
            log.info("audit spool written", extra={"rows": count})

    def _replay_rows(self, rows: list[dict[str, Any]]) -> None:
        # One transaction for the whole file: a failure part-way must not write some rows and re-spool them all.
        self._insert([AuditRecord.from_row(r) for r in rows])


def _card_row(r: AuditRecord, card_uuid: str, rule: str) -> dict[str, object]:
    details = {u: (indicator, suggestions) for u, indicator, suggestions in r.card_details}
    indicator, suggestions = details.get(card_uuid, (None, ()))
    # Every key in every row: executemany needs one shape for the whole batch.
    return {"uuid": card_uuid, "rule_id": rule, "service": r.service, "hook_instance": r.hook_instance[:128],
            "created_at": r.created_at, "client": r.client[:256] if r.client else None,
            "patient_hash": r.patient_hash, "indicator": indicator, "suggestions": list(suggestions)}


def now_utc() -> datetime:
    return datetime.now(UTC)
