"""Audit rows are written by one background thread in batches, so the EHR never waits for the database."""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

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


class AuditWriter:
    def __init__(self, db: Database, batch_size: int = 200, flush_seconds: float = 0.2) -> None:
        self.db = db
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(maxsize=100_000)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def submit(self, record: AuditRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def flush(self) -> None:
        """Write everything queued so far (tests and shutdown)."""
        batch: list[AuditRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
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
                self.flush()
                return
            batch = [item]
            while len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(batch)
                    self.flush()
                    return
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[AuditRecord]) -> None:
        try:
            with self.db.session() as s:
                for r in batch:
                    s.add(Invocation(hook_instance=r.hook_instance[:128], service=r.service,
                                     patient_hash=r.patient_hash, rule_ids=list(r.rule_ids),
                                     card_count=len(r.card_uuids), phase=r.phase, duration_ms=r.duration_ms,
                                     status=r.status, problems=r.problems, created_at=r.created_at))
                    for card_uuid, rule_id in r.card_uuids:
                        s.merge(IssuedCard(uuid=card_uuid, rule_id=rule_id, service=r.service,
                                           hook_instance=r.hook_instance[:128], created_at=r.created_at))
        except Exception:  # noqa: BLE001 - auditing must never take the service down
            log.exception("audit batch of %d rows could not be written", len(batch))


def now_utc() -> datetime:
    return datetime.now(UTC)
