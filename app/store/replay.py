"""JWT replay cache in the database, so that every worker process sees every jti."""

from __future__ import annotations

import hashlib
import time

import anyio
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.store.db import Database
from app.store.models import SeenJti


class ReplayCacheUnavailable(Exception):
    """The database did not answer within the check's time bound: the caller answers 503, never hangs."""


class DatabaseReplayCache:
    def __init__(self, db: Database, purge_every: float = 60.0, timeout: float = 3.0) -> None:
        self.db = db
        self.purge_every = purge_every
        self.timeout = timeout
        self._last_purge = 0.0

    async def seen(self, iss: str, jti: str, exp: int) -> bool:
        # The driver's own timeouts bound the thread; this bounds the request even if they do not fire (a
        # half-open TCP connection, a pool wait). The abandoned thread finishes or fails on its own.
        try:
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(self._seen, iss, jti, exp, abandon_on_cancel=True)
        except TimeoutError:
            raise ReplayCacheUnavailable(f"no answer within {self.timeout:g} s") from None

    def _seen(self, iss: str, jti: str, exp: int) -> bool:
        key = hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()
        now = time.time()
        try:
            with self.db.session() as s:
                if now - self._last_purge > self.purge_every:
                    s.execute(delete(SeenJti).where(SeenJti.expires_at < int(now)))
                    self._last_purge = now
                s.add(SeenJti(key=key, expires_at=int(exp)))
            return False
        except IntegrityError:
            return True
