"""JWT replay cache in the database, so that every worker process sees every jti."""

from __future__ import annotations

import hashlib
import time

import anyio
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.store.db import Database
from app.store.models import SeenJti


class DatabaseReplayCache:
    def __init__(self, db: Database, purge_every: float = 60.0) -> None:
        self.db = db
        self.purge_every = purge_every
        self._last_purge = 0.0

    async def seen(self, iss: str, jti: str, exp: int) -> bool:
        return await anyio.to_thread.run_sync(self._seen, iss, jti, exp)

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
