"""Run the Alembic migrations programmatically (used by `mbc-cds migrate`, start-up and tests)."""

from __future__ import annotations

import logging
import random
import time
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from app.store.db import normalise_url

log = logging.getLogger("mbc_cds.migrate")
# pg_advisory_lock key shared by every process that migrates this service's database
_PG_LOCK_KEY = zlib.crc32(b"mbc-cds-migrations")

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def upgrade_at_start(url: str, timeout: float = 60.0) -> None:
    """`upgrade` that several worker processes can run at once on a fresh database (uvicorn --workers N).

    PostgreSQL: the processes queue on an advisory lock, so one migrates and the others find the schema at
    head. Any database: when a concurrent migration still makes this one fail (SQLite: "table ... already
    exists"), it is retried until the winner has finished (or `timeout`).
    """
    url = normalise_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if url.startswith("postgresql"):
                _upgrade_pg_locked(url)
            else:
                upgrade(url)
            return
        except DBAPIError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("migration raced another process; retrying", extra={"exc_type": type(exc.orig).__name__})
            time.sleep(0.1 + random.random() * 0.4)


def _upgrade_pg_locked(url: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            try:
                upgrade(url)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
    finally:
        engine.dispose()
