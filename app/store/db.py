"""Engine and session factory. SQLite gets WAL and a busy timeout so that several workers can write.

Every wait on the database is bounded (docs/security.md): a blackholed or locked database makes callers fail
in seconds (503 for the replay cache, a spooled batch for the audit writer), never hang a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    # Plain postgresql:// would pick psycopg2, which is not a dependency; psycopg 3 is.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@dataclass(frozen=True)
class DbTimeouts:
    connect_seconds: int = 5  # PostgreSQL connect_timeout; SQLite: the busy timeout below
    statement_seconds: float = 10.0  # PostgreSQL statement_timeout and SQLite busy timeout
    pool_seconds: float = 5.0  # waiting for a pooled connection


def make_engine(url: str, timeouts: DbTimeouts | None = None) -> Engine:
    url = normalise_url(url)
    t = timeouts or DbTimeouts()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": t.statement_seconds}
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_timeout=t.pool_seconds, connect_args={
            "connect_timeout": t.connect_seconds,
            "options": f"-c statement_timeout={int(t.statement_seconds * 1000)}"})
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        busy_ms = int(t.statement_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()
    return engine


class Database:
    def __init__(self, url: str, timeouts: DbTimeouts | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, timeouts)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    def dispose(self) -> None:
        self.engine.dispose()
