"""`mbc-cds` command line: serve, evaluate, migrate, demo, load, hook, feedback-report."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

INDICATOR_MARK = {"critical": "!!", "warning": "! ", "info": "i "}


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def render_cards_table(cards: list[dict[str, Any]], width: int = 100) -> str:
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
                    settings: Any = None, hook: str = "patient-view",
                    draft_orders: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Cards for one patient's resources in a Bundle (any Bundle type), without HTTP or a database; with
    `draft_orders` (a Bundle) the cards of order-select / order-sign for those drafts (all of them judged)."""
    from app.engine.knowledge import compile_knowledge
    from app.hook import HookProcessor
    from app.settings import Settings
    from terminology import get_terminology

    if bundle.get("resourceType") != "Bundle":
        raise ValueError("the file must hold a FHIR Bundle")
    resources = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e, dict)]
    if patient_id is None:
        patient = next((r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Patient"), None)
        if patient is None or not patient.get("id"):
            raise ValueError("no Patient with an id in the Bundle: pass --patient")
        patient_id = str(patient["id"])
    processor = HookProcessor(settings or Settings(require_jwt=False), get_terminology(), compile_knowledge(),
                              None)
    if hook != "patient-view":
        from cds_hooks.draft_orders import parse_draft_orders

        drafts = parse_draft_orders(draft_orders or {"resourceType": "Bundle", "entry": []})
        outcome = processor.evaluate_orders(hook, drafts, resources, patient_id, now or datetime.now(UTC),
                                            hook_instance="cli")
    else:
        outcome = processor.evaluate(resources, patient_id, now or datetime.now(UTC), hook_instance="cli")
    return outcome.cards


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("app.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, proxy_headers=True)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        from app.integrator import CommandError, read_draft_orders

        bundle = orjson.loads(Path(args.file).read_bytes())
        hook = args.hook or ("order-sign" if args.draft else "patient-view")
        drafts = read_draft_orders(args.draft) if args.draft else None
        cards = evaluate_bundle(bundle, patient_id=args.patient, now=_parse_now(args.now), hook=hook,
                                draft_orders=drafts)
    except (OSError, orjson.JSONDecodeError, ValueError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.pretty:
        print(render_cards_table(cards))
    else:
        _print_json({"cards": cards})
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.settings import get_settings
    from app.store.migrate import upgrade

    url = args.database_url or get_settings().database_url
    upgrade(url)
    print("database is at the latest schema")
    return 0


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from app.settings import get_settings
    from app.store.db import Database
    from app.store.feedback import feedback_report

    db = Database(args.database_url or get_settings().database_url)
    rows = feedback_report(db)
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'rule':<36} {'accepted':>9} {'overridden':>11}")
    for row in rows:
        print(f"{row['rule']!s:<36} {row['accepted']!s:>9} {row['overridden']!s:>11}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("MBC_CDS_REQUIRE_JWT", "false")
    os.environ.setdefault("MBC_CDS_DATABASE_URL", "sqlite:///./mbc-cds-demo.db")
    from app.settings import get_settings

    get_settings.cache_clear()
    base = f"http://{args.host}:{args.port}"
    print(f"mbc-cds demo: JWT verification OFF, SQLite at {os.environ['MBC_CDS_DATABASE_URL']}")
    print(f"  card viewer:  {base}/")
    print(f"  discovery:    {base}/cds-services")
    print(f"  try:          curl -s -X POST {base}/cds-services/mbc-palliative-care "
          f"-H 'Content-Type: application/json' --data @<(curl -s {base}/demo/request/mbc-demo-01)")
    try:
        from app.samples import list_samples

        samples = list_samples()
        now = datetime.now(UTC)
        from app.samples import sample_bundle

        for sample in samples[:20]:
            cards = evaluate_bundle(sample_bundle(sample["id"], now=now), now=now)
            print(f"\n== {sample['id']}: {sample.get('title', '')}")
            print(render_cards_table(cards))
    except ImportError:
        pass
    import uvicorn

    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mbc-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the CDS Hooks service (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("evaluate", help="cards for a Bundle file of one patient's resources")
    p.add_argument("file")
    p.add_argument("--patient", help="patient id (default: the Patient in the Bundle)")
    p.add_argument("--now", help="evaluation time, ISO 8601 (default: now)")
    p.add_argument("--pretty", action="store_true", help="a readable table instead of JSON")
    p.add_argument("--hook", choices=("patient-view", "order-select", "order-sign"),
                   help="default patient-view, or order-sign with --draft")
    p.add_argument("--draft", metavar="FILE", help="draft orders (a Bundle or one resource) for the order hooks")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.add_argument("--database-url")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("feedback-report", help="accepted / overridden counts per rule")
    p.add_argument("--database-url")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_feedback_report)

    p = sub.add_parser("demo", help="run with embedded SQLite, JWT off, sample patients and the card viewer")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_demo)

    _register_integrator_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


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
