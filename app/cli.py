"""`mbc-cds` command line. Errors are one or two lines that say what to do, never a traceback
(MBC_CDS_DEBUG=1 shows it); exit code 2 means usage or configuration, 1 a failure while working."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # imported lazily at run time: `mbc-cds --help` stays fast
    from app.hook import HookOutcome
    from app.settings import Settings
    from cds_hooks.cards import Card

DEMO_DATABASE_URL = "sqlite:///./mbc-cds-demo.db"
SERVICE_PATH = "/cds-services/mbc-palliative-care"


class CliError(Exception):
    """A message for the user (what went wrong, what to do) and the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _shown_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the user typed it, minus nothing secret
        return url.split("@")[-1]


def _database_url(args: argparse.Namespace) -> str:
    if getattr(args, "demo", False):
        return DEMO_DATABASE_URL
    if args.database_url:
        return str(args.database_url)
    return str(_settings().database_url)


def _settings() -> Settings:
    from pydantic import ValidationError

    from app.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MBC_CDS_" + "_".join(str(x) for x in first.get("loc", ())).upper()
        raise CliError(f"configuration error: {name}: {first.get('msg', 'invalid')}. "
                       "Fix the environment variable (or .env) and run again.") from None


_DATABASE_HINT = "pass --database-url (or set MBC_CDS_DATABASE_URL)"


def _database_error(exc: BaseException, url: str, action: str, hint: str = _DATABASE_HINT) -> CliError:
    """One line naming the database and the driver's first line, one saying what to do."""
    orig = getattr(exc, "orig", None) or exc
    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
    return CliError(f"error: cannot {action} {_shown_url(url)}: {reason}\n"
                    f"Check that the database is running and reachable, or {hint}.")


def _sqlite_file(url: str) -> Path | None:
    from app.store.db import normalise_url

    url = normalise_url(url)
    if not url.startswith("sqlite") or ":memory:" in url:
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return Path(path) if path else None


def _check_database(url: str, hint: str = _DATABASE_HINT) -> None:
    """Connect once (5 s timeout) so that an unreachable database is one clear line, not a driver traceback."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from app.store.db import normalise_url

    try:
        full = normalise_url(url)
        connect_args = {"connect_timeout": 5} if full.startswith("postgresql") else {}
        engine = create_engine(full, connect_args=connect_args)
    except ArgumentError:
        raise CliError(f"error: {_shown_url(url)} is not a database URL (e.g. sqlite:///./mbc-cds.db or "
                       "postgresql+psycopg://user@host:5432/db)") from None
    except ModuleNotFoundError as exc:
        raise CliError(f"error: the driver for {_shown_url(url)} is not installed ({exc.name}). "
                       "For PostgreSQL: pip install 'mbc-cds[postgres]'") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except SQLAlchemyError as exc:
        raise _database_error(exc, url, "connect to", hint) from None
    finally:
        engine.dispose()


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def render_cards_table(cards: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    """The cards as text, from this service's engine or from any CDS service's JSON answer."""
    if not cards:
        return "No cards: the service has nothing to say for this patient."
    lines: list[str] = []
    for i, card in enumerate(cards, 1):
        topic = (card.get("source") or {}).get("topic") or {}
        lines.append(f"{i:>2}. [{card.get('indicator', '?'):<8}] {card.get('summary', '')}")
        lines.append(f"    rule: {topic.get('code', '?')}   source: {(card.get('source') or {}).get('label', '')}")
        for s in card.get("suggestions") or []:
            resource = (s.get("actions") or [{}])[0].get("resource") or {}
            lines.append(f"    -> suggestion: {s.get('label')} ({resource.get('resourceType', '?')} "
                         f"{resource.get('status', '')}/{resource.get('intent', '')})")
    return "\n".join(textwrap.shorten(line, width=width + 40, placeholder="...") if len(line) > width + 40
                     else line for line in lines)


def _parse_now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def evaluate_bundle(bundle: dict[str, Any], *, patient_id: str | None = None, now: datetime | None = None,
                    settings: Settings | None = None, hook: str = "patient-view",
                    draft_orders: dict[str, Any] | None = None) -> list[Card]:
    """Cards for one patient's resources in a Bundle (any Bundle type), without HTTP or a database; with
    `draft_orders` (a Bundle) the cards of order-select / order-sign for those drafts."""
    return evaluate_bundle_outcome(bundle, patient_id=patient_id, now=now, settings=settings, hook=hook,
                                   draft_orders=draft_orders).cards


def evaluate_bundle_outcome(bundle: dict[str, Any], *, patient_id: str | None = None,
                            now: datetime | None = None, settings: Settings | None = None, hook: str = "patient-view",
                            draft_orders: dict[str, Any] | None = None) -> HookOutcome:
    """The whole HookOutcome (cards, and the evaluation with the facts the rules read) for a Bundle."""
    from app.engine.knowledge import compile_knowledge
    from app.hook import HookProcessor
    from app.runtime import terminology_for
    from app.settings import Settings

    if bundle.get("resourceType") != "Bundle":
        raise ValueError("the file must hold a FHIR Bundle")
    resources = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e, dict)]
    if patient_id is None:
        patient = next((r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Patient"), None)
        if patient is None or not patient.get("id"):
            raise ValueError("no Patient with an id in the Bundle: pass --patient")
        patient_id = str(patient["id"])
    settings = settings or Settings(require_jwt=False)
    processor = HookProcessor(settings, terminology_for(settings), compile_knowledge(),
                              None)
    if hook != "patient-view":
        from cds_hooks.draft_orders import parse_draft_orders

        drafts = parse_draft_orders(draft_orders or {"resourceType": "Bundle", "entry": []},
                                    None)
        return processor.evaluate_orders(hook, drafts, resources, patient_id, now or datetime.now(UTC),
                                         hook_instance="cli")
    return processor.evaluate(resources, patient_id, now or datetime.now(UTC), hook_instance="cli")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # What start-up would fail on, checked here so that it is one line and not a traceback inside uvicorn's.
    from app.safety import UnsafeConfiguration, check_configuration
    from app.serving import ServeOptions, uvicorn_kwargs
    from app.settings import get_settings

    if args.timeout_header is not None:
        os.environ["MBC_CDS_HEADER_TIMEOUT_SECONDS"] = str(args.timeout_header)  # reaches worker processes
        get_settings.cache_clear()
    settings = _settings()
    clients: list[Any] = []
    if settings.require_jwt and settings.clients_file:
        from cds_hooks.auth import load_clients

        try:
            clients = load_clients(settings.clients_file)
        except ValueError as exc:
            raise CliError(f"error: {exc}\nFix MBC_CDS_CLIENTS_FILE (docs/security.md shows the format).") from None
    try:
        check_configuration(settings, clients)
    except UnsafeConfiguration as exc:
        raise CliError(f"error: {exc}") from None
    _check_database(settings.database_url, hint="set MBC_CDS_DATABASE_URL")

    options = ServeOptions(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
                           limit_concurrency=args.limit_concurrency, timeout_keep_alive=args.timeout_keep_alive,
                           max_header_bytes=args.max_header_bytes)
    uvicorn.run("app.main:app", **uvicorn_kwargs(options, settings))
    return 0


def write_timeline(outcome: HookOutcome, path: Path, *, link_base: str = "", days: int | None = 120) -> None:
    """The patient's timeline (the facts behind `outcome`'s cards) as SVG, or as its JSON for a .json path."""
    from app.clinical.timeline import build_timeline
    from app.timeline_svg import render_timeline_svg

    timeline = build_timeline(outcome.evaluation.facts)
    if path.suffix.lower() == ".json":
        path.write_bytes(orjson.dumps(timeline, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        path.write_text(render_timeline_svg(timeline, link_base=link_base, days=days), encoding="utf-8")


def cmd_evaluate(args: argparse.Namespace) -> int:
    timeline = Path(args.timeline) if args.timeline else None
    if timeline is not None and timeline.suffix.lower() not in {".svg", ".json"}:
        raise CliError(f"error: --timeline {args.timeline}: the timeline is written as SVG (name ending .svg) "
                       "or as its JSON (.json)")
    try:
        now = _parse_now(args.now)
    except ValueError:
        raise CliError(f"error: --now {args.now!r} is not an ISO 8601 date or date-time "
                       "(e.g. 2026-03-01T09:00:00Z)") from None
    from app.integrator import CommandError, read_draft_orders

    try:
        bundle = orjson.loads(Path(args.file).read_bytes())
    except OSError as exc:
        raise CliError(f"error: cannot read {args.file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"error: {args.file} is not JSON ({exc})") from None
    if not isinstance(bundle, dict):
        raise CliError(f"error: {args.file} must hold a FHIR Bundle (a JSON object)")
    hook = args.hook or ("order-sign" if args.draft else "patient-view")
    try:
        drafts = read_draft_orders(args.draft) if args.draft else None
    except CommandError as exc:
        raise CliError(f"error: {exc}") from None
    try:
        outcome = evaluate_bundle_outcome(bundle, patient_id=args.patient, now=now, hook=hook,
                                          draft_orders=drafts)
    except ValueError as exc:  # DraftOrderError is a ValueError
        raise CliError(f"error: {args.file}: {exc}") from None
    cards = outcome.cards
    if timeline is not None:
        try:
            write_timeline(outcome, timeline, link_base=args.fhir_base or "",
                           days=args.timeline_days or None)
        except OSError as exc:
            raise CliError(f"error: cannot write {timeline}: {exc.strerror or exc}", code=1) from None
        print(f"timeline written to {timeline}", file=sys.stderr)
    if args.pretty:
        print(render_cards_table(cards))
    else:
        _print_json({"cards": cards})
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.store.migrate import upgrade

    url = _database_url(args)
    _check_database(url)
    try:
        upgrade(url)
    except Exception as exc:  # noqa: BLE001 - Alembic and the drivers raise many kinds; all mean "not migrated"
        error = _database_error(exc, url, "migrate")
        error.code = 1
        raise error from None
    print(f"{_shown_url(url)} is at the latest schema")
    return 0


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.store.db import Database
    from app.store.feedback import feedback_report, snooze_report

    url = _database_url(args)
    hint = ("for the demo's database add --demo" if url != DEMO_DATABASE_URL
            else "run `mbc-cds demo` and send feedback from the viewer first")
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        raise CliError(f"error: no database at {sqlite_file} ({_shown_url(url)}).\n"
                       f"{hint[0].upper()}{hint[1:]}; for another, --database-url URL.")
    _check_database(url)
    print(f"feedback in {_shown_url(url)}", file=sys.stderr)
    db = Database(url)
    try:
        rows = feedback_report(db)
        snoozes = snooze_report(db)
    except SQLAlchemyError as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise CliError(f"error: {_shown_url(url)} has no feedback table (not an mbc-cds database, or never "
                           f"migrated).\n{hint[0].upper()}{hint[1:]}; "
                           "or run `mbc-cds migrate --database-url URL`.") from None
        raise _database_error(exc, url, "read feedback from") from None
    finally:
        db.engine.dispose()
    if args.json:
        _print_json({"rules": rows, "snoozes": snoozes})
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


def demo_banner_lines(base: str, database_url: str, fhir_server: str | None = None) -> list[str]:
    """What `mbc-cds demo` prints last, under the cards, so that it is on screen when the server is up.

    One function so that other entry points (a sandbox URL, an order-sign link) add a line here.
    """
    from app.integrator import sandbox_hint_lines
    return [
        "",
        f"mbc-cds demo is running: JWT verification OFF, synthetic patients only, database {database_url}",
        f"  card viewer:      {base}/",
        f"  discovery:        {base}/cds-services",
        f"  fire a hook:      curl -s {base}/demo/request/mbc-demo-01 | curl -s -X POST {base}{SERVICE_PATH} "
        "-H 'Content-Type: application/json' --data @- | python3 -m json.tool",
        "  feedback report:  mbc-cds feedback-report --demo   (reads this demo's database)",
        "  stop:             Ctrl+C",
    ] + (sandbox_hint_lines(base, fhir_server) if fhir_server else [])


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("MBC_CDS_REQUIRE_JWT", "false")
    os.environ.setdefault("MBC_CDS_DATABASE_URL", DEMO_DATABASE_URL)
    from app.settings import get_settings

    get_settings.cache_clear()
    settings = _settings()
    if not _port_free(args.host, args.port):
        raise CliError(f"error: {args.host}:{args.port} is already in use (another demo or server?): "
                       "stop it, or pick another port with --port")
    base = f"http://{args.host}:{args.port}"
    try:
        from app.samples import list_samples, sample_bundle
    except ImportError:
        pass
    else:
        now = datetime.now(UTC)
        for sample in list_samples()[:20]:
            cards = evaluate_bundle(sample_bundle(sample["id"], now=now), now=now)
            print(f"\n== {sample['id']}: {sample.get('title', '')}")
            print(render_cards_table(cards))
    banner = demo_banner_lines(base, _shown_url(settings.database_url), args.fhir_server)
    _serve_then_announce(args.host, args.port, banner)
    return 0


def _serve_then_announce(host: str, port: int, lines: list[str]) -> None:
    """Run uvicorn and print `lines` once it is listening: after the start-up log lines, so the URLs stay in view."""
    import threading
    import time

    import uvicorn

    from app.serving import ServeOptions, uvicorn_kwargs
    from app.settings import get_settings

    # The demo gets the same server hardening as `serve` (no `server` header, proxy headers off, header timeout).
    options = ServeOptions(host=host, port=port, log_level="warning")
    server = uvicorn.Server(uvicorn.Config("app.main:app", **uvicorn_kwargs(options, get_settings())))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            sys.stderr.flush()
            print("\n".join(lines), flush=True)

    threading.Thread(target=announce, name="demo-banner", daemon=True).start()
    server.run()


def build_parser() -> argparse.ArgumentParser:
    from app.serving import DEFAULT_LIMIT_CONCURRENCY, DEFAULT_MAX_HEADER_BYTES, DEFAULT_TIMEOUT_KEEP_ALIVE

    parser = argparse.ArgumentParser(prog="mbc-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the CDS Hooks service (uvicorn)",
                       description="Run the service with the settings in MBC_CDS_* variables (or .env); the "
                                   "database is migrated at start-up.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    p.add_argument("--limit-concurrency", type=int, default=DEFAULT_LIMIT_CONCURRENCY,
                   help="connections and requests at once per worker; 503 beyond (default %(default)s)")
    p.add_argument("--timeout-keep-alive", type=int, default=DEFAULT_TIMEOUT_KEEP_ALIVE,
                   help="seconds an idle keep-alive connection stays open (default %(default)s)")
    p.add_argument("--timeout-header", type=float, default=None,
                   help="seconds a connection has to send its request headers (default: "
                        "MBC_CDS_HEADER_TIMEOUT_SECONDS, 10)")
    p.add_argument("--max-header-bytes", type=int, default=DEFAULT_MAX_HEADER_BYTES,
                   help="largest request line plus headers, bytes (default %(default)s)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("evaluate", help="cards (and a timeline) for a Bundle file of one patient's resources",
                       description="Evaluate one patient's Bundle (any Bundle type) offline: no HTTP, no database.")
    p.add_argument("file", help="a FHIR R4 Bundle (JSON) of one patient's resources")
    p.add_argument("--patient", help="patient id (default: the Patient in the Bundle)")
    p.add_argument("--now", help="evaluation time, ISO 8601 (default: now)")
    p.add_argument("--pretty", action="store_true", help="a readable table instead of JSON")
    p.add_argument("--hook", choices=("patient-view", "order-select", "order-sign"),
                   help="default patient-view, or order-sign with --draft")
    p.add_argument("--draft", metavar="FILE", help="draft orders (a Bundle or one resource) for the order hooks")
    p.add_argument("--timeline", metavar="FILE",
                   help="also write the patient's timeline to FILE: SVG (FILE.svg) or its JSON (FILE.json)")
    p.add_argument("--timeline-days", type=int, default=120, metavar="N",
                   help="days the SVG timeline shows, up to now (default 120; 0: the whole record)")
    p.add_argument("--fhir-base", metavar="URL",
                   help="FHIR base URL the timeline's points link to (default: relative references)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("migrate", help="create or upgrade the database schema",
                       description="Bring the database to the latest schema (serve and demo also do this at start).")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: MBC_CDS_DATABASE_URL, else sqlite:///./mbc-cds.db)")
    p.add_argument("--demo", action="store_true", help=f"the demo's database ({DEMO_DATABASE_URL})")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("feedback-report", help="accepted / overridden counts per rule",
                       description="Counts of accepted and overridden cards per rule, from the feedback the "
                                   "service stored. Says which database it reads (on stderr).")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: MBC_CDS_DATABASE_URL, else sqlite:///./mbc-cds.db)")
    p.add_argument("--demo", action="store_true", help=f"read the database `mbc-cds demo` writes ({DEMO_DATABASE_URL})")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_feedback_report)

    p = sub.add_parser("demo", help="run with embedded SQLite, JWT off, sample patients and the card viewer",
                       description=f"Print every sample patient's cards, then serve the card viewer with JWT "
                                   f"verification off and SQLite at {DEMO_DATABASE_URL} (synthetic data only).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--fhir-server", default="http://127.0.0.1:8090",
                   help="FHIR server named in the printed CDS Hooks Sandbox URL (default: the local test server)")
    p.set_defaults(func=cmd_demo)

    _register_integrator_commands(sub)
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


def _register_integrator_commands(sub: Any) -> None:
    """Commands that live in their own modules (integrator tools, population worklist)."""
    import importlib

    for module in ("app.integrator", "app.worklist.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):
                raise
            continue
        mod.register(sub)


if __name__ == "__main__":
    raise SystemExit(main())
