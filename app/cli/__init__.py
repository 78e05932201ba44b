"""`mbc-cds` command line. Errors are one or two lines that say what to do, never a traceback
(MBC_CDS_DEBUG=1 shows it); exit code 2 means usage or configuration, 1 a failure while working."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app.cli import demo, evaluate, feedback_report, hook, load, migrate, serve, worklist
from app.cli.errors import CliError

# In the order `mbc-cds --help` lists them; each module adds its own subcommand.
COMMANDS = (serve, evaluate, migrate, feedback_report, demo, load, hook, worklist)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbc-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("MBC_CDS_DEBUG"):
            raise
        # Last resort: still no traceback, but enough to report the problem.
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}\n"
              "This is unexpected: run again with MBC_CDS_DEBUG=1 for the details and report them.", file=sys.stderr)
        return 1
