"""The database a command works on: which URL, shown without its password, reachable or one clear line."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.config import load_settings
from app.cli.errors import CliError

DEMO_DATABASE_URL = "sqlite:///./mbc-cds-demo.db"
DATABASE_HINT = "pass --database-url (or set MBC_CDS_DATABASE_URL)"


def shown_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the user typed it, minus nothing secret
        return url.split("@")[-1]


def database_url(args: argparse.Namespace) -> str:
    if getattr(args, "demo", False):
        return DEMO_DATABASE_URL
    if args.database_url:
        return str(args.database_url)
    return str(load_settings().database_url)


def database_error(exc: BaseException, url: str, action: str, hint: str = DATABASE_HINT) -> CliError:
    """One line naming the database and the driver's first line, one saying what to do."""
    orig = getattr(exc, "orig", None) or exc
    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
    return CliError(f"error: cannot {action} {shown_url(url)}: {reason}\n"
                    f"Check that the database is running and reachable, or {hint}.")


def sqlite_file(url: str) -> Path | None:
    from app.store.db import normalise_url

    url = normalise_url(url)
    if not url.startswith("sqlite") or ":memory:" in url:
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return Path(path) if path else None


def check_database(url: str, hint: str = DATABASE_HINT) -> None:
    """Connect once (5 s timeout) so that an unreachable database is one clear line, not a driver traceback."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from app.store.db import normalise_url

    try:
        full = normalise_url(url)
        connect_args = {"connect_timeout": 5} if full.startswith("postgresql") else {}
        engine = create_engine(full, connect_args=connect_args)
    except ArgumentError:
        raise CliError(f"error: {shown_url(url)} is not a database URL (e.g. sqlite:///./mbc-cds.db or "
                       "postgresql+psycopg://user@host:5432/db)") from None
    except ModuleNotFoundError as exc:
        raise CliError(f"error: the driver for {shown_url(url)} is not installed ({exc.name}). "
                       "For PostgreSQL: pip install 'mbc-cds[postgres]'") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except SQLAlchemyError as exc:
        raise database_error(exc, url, "connect to", hint) from None
    finally:
        engine.dispose()
