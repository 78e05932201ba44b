"""`mbc-cds evaluate`: cards (and a timeline) for a Bundle file of one patient's resources, offline."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from app.cli.draft_orders import DraftFileError, read_draft_orders
from app.cli.errors import CliError
from app.cli.output import print_json, render_cards_table
from app.cli.parsing import Subcommands

if TYPE_CHECKING:  # imported lazily at run time: `mbc-cds --help` stays fast
    from app.service.outcome import HookOutcome
    from app.settings import Settings
    from cds_hooks.cards import Card


def register(sub: Subcommands) -> None:
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
    """The whole HookOutcome (cards, and the evaluation with the facts the rules read) for a Bundle, its
    resources read as a FHIR server stores them (app.bundles), as the viewer and the hook requests read them."""
    from app.bundles import bundle_resources, patient_id_of
    from app.service.factory import build_evaluator
    from app.settings import Settings

    if bundle.get("resourceType") != "Bundle":
        raise ValueError("the file must hold a FHIR Bundle")
    resources = bundle_resources(bundle)
    if patient_id is None:
        try:
            patient_id = patient_id_of(resources)
        except ValueError:
            raise ValueError("no Patient with an id in the Bundle: pass --patient") from None
    evaluator = build_evaluator(settings or Settings(require_jwt=False))
    if hook != "patient-view":
        from cds_hooks.draft_orders import parse_draft_orders

        drafts = parse_draft_orders(draft_orders or {"resourceType": "Bundle", "entry": []}, None)
        return evaluator.evaluate_orders(hook, drafts, resources, patient_id, now or datetime.now(UTC),
                                         hook_instance="cli")
    return evaluator.evaluate(resources, patient_id, now or datetime.now(UTC), hook_instance="cli")


def write_timeline(outcome: HookOutcome, path: Path, *, link_base: str = "", days: int | None = 120) -> None:
    """The patient's timeline (the facts behind `outcome`'s cards) as SVG, or as its JSON for a .json path."""
    from app.clinical.timeline import build_timeline
    from app.timeline_svg import render_timeline_svg

    timeline = build_timeline(outcome.evaluation.facts)
    if path.suffix.lower() == ".json":
        path.write_bytes(orjson.dumps(timeline, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        path.write_text(render_timeline_svg(timeline, link_base=link_base, days=days), encoding="utf-8")


def _parse_now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    except DraftFileError as exc:
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
        print_json({"cards": cards})
    return 0
