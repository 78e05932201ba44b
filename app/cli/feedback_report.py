"""`mbc-cds feedback-report`: accepted / overridden counts per rule, and the active snoozes."""

from __future__ import annotations

import argparse
import sys

from app.cli.database import DEMO_DATABASE_URL, check_database, database_error, database_url, shown_url, sqlite_file
from app.cli.errors import CliError
from app.cli.output import print_json
from app.cli.parsing import Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser("feedback-report", help="accepted / overridden counts per rule",
                       description="Counts of accepted and overridden cards per rule, from the feedback the "
                                   "service stored. Says which database it reads (on stderr).")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: MBC_CDS_DATABASE_URL, else sqlite:///./mbc-cds.db)")
    p.add_argument("--demo", action="store_true", help=f"read the database `mbc-cds demo` writes ({DEMO_DATABASE_URL})")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_feedback_report)


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.store.db import Database
    from app.store.feedback import feedback_report, snooze_report

    url = database_url(args)
    hint = ("for the demo's database add --demo" if url != DEMO_DATABASE_URL
            else "run `mbc-cds demo` and send feedback from the viewer first")
    sqlite_path = sqlite_file(url)
    if sqlite_path is not None and not sqlite_path.exists():
        raise CliError(f"error: no database at {sqlite_path} ({shown_url(url)}).\n"
                       f"{hint[0].upper()}{hint[1:]}; for another, --database-url URL.")
    check_database(url)
    print(f"feedback in {shown_url(url)}", file=sys.stderr)
    db = Database(url)
    try:
        rows = feedback_report(db)
        snoozes = snooze_report(db)
    except SQLAlchemyError as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise CliError(f"error: {shown_url(url)} has no feedback table (not an mbc-cds database, or never "
                           f"migrated).\n{hint[0].upper()}{hint[1:]}; "
                           "or run `mbc-cds migrate --database-url URL`.") from None
        raise database_error(exc, url, "read feedback from") from None
    finally:
        db.engine.dispose()
    if args.json:
        print_json({"rules": rows, "snoozes": snoozes})
        return 0
    print(f"{'rule':<36} {'accepted':>9} {'overridden':>11}")
    for row in rows:
        print(f"{row['rule']!s:<36} {row['accepted']!s:>9} {row['overridden']!s:>11}")
    print("\nactive snoozes (rule silenced for a patient after an override)")
    print(f"{'rule':<36} {'reason':<18} {'patients':>8}  latest until")
    for z in snoozes:
        print(f"{z['rule']!s:<36} {z['reason']!s:<18} {z['patients']!s:>8}  {z['latestUntil']}")
    if not snoozes:
        print("(none)")
    return 0
