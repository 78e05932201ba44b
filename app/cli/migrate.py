"""`mbc-cds migrate`: create or upgrade the database schema."""

from __future__ import annotations

import argparse

from app.cli.database import DEMO_DATABASE_URL, check_database, database_error, database_url, shown_url
from app.cli.parsing import Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema",
                       description="Bring the database to the latest schema (serve and demo also do this at start).")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: MBC_CDS_DATABASE_URL, else sqlite:///./mbc-cds.db)")
    p.add_argument("--demo", action="store_true", help=f"the demo's database ({DEMO_DATABASE_URL})")
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.store.migrate import upgrade

    url = database_url(args)
    check_database(url)
    try:
        upgrade(url)
    except Exception as exc:  # noqa: BLE001 - Alembic and the drivers raise many kinds; all mean "not migrated"
        error = database_error(exc, url, "migrate")
        error.code = 1
        raise error from None
    print(f"{shown_url(url)} is at the latest schema")
    return 0
