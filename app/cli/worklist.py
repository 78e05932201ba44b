"""`mbc-cds worklist INPUT --out FILE`: a ranked palliative care worklist for a whole population."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from app.cli.errors import CliError
from app.cli.parsing import Subcommands
from app.worklist.core import make_settings, parse_now
from app.worklist.output import output_paths, summary_table, write_csv, write_fhir, write_ndjson
from app.worklist.readers import DEFAULT_BUCKET_BYTES

RESOURCE_LEVELS = ("basic", "limited", "enhanced", "maximal")


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "worklist", help="ranked palliative care worklist for a population (Bulk Data NDJSON or Bundles)",
        description="Evaluate every patient of a FHIR Bulk Data export (NDJSON) or a directory of Bundles with "
                    "the hook's engine and write a ranked worklist: emergencies, acute phase without palliative "
                    "care, missing advance care planning, then the rest.")
    p.add_argument("input", help="Bulk Data export directory (*.ndjson), a directory of Bundle .json files, "
                                 "or one such file")
    p.add_argument("--out", required=True, help="worklist file (with --format both: .csv and .ndjson beside it)")
    p.add_argument("--format", choices=("csv", "ndjson", "both"), default="csv")
    p.add_argument("--engine", choices=("local", "spark"), default="local")
    p.add_argument("--now", help="evaluation time, ISO 8601 (default: now)")
    p.add_argument("--resource-level", choices=RESOURCE_LEVELS, default=None,
                   help="resource level (default: the deployment setting, MBC_CDS_RESOURCE_LEVEL or enhanced)")
    p.add_argument("--fhir-out", help="also write a FHIR List (the worklist) and the draft ServiceRequests as "
                                      "NDJSON")
    p.add_argument("--bucket-mb", type=float, default=DEFAULT_BUCKET_BYTES / 2**20,
                   help="local engine: inputs larger than this are grouped through on-disk buckets of this size "
                        "(default %(default)s MiB)")
    p.add_argument("--spark-master", default=os.environ.get("MBC_CDS_SPARK_MASTER", "local[2]"),
                   help="Spark master URL (default %(default)s)")
    p.add_argument("--partitions", type=int, default=None, help="Spark: partitions after grouping by patient")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--quiet", action="store_true", help="no summary table")
    p.set_defaults(func=cmd_worklist)


def cmd_worklist(args: argparse.Namespace) -> int:
    try:
        now = parse_now(args.now)
    except ValueError as exc:
        raise CliError(f"error: --now: {exc}") from None
    settings = make_settings(args.resource_level)
    progress = not args.no_progress
    source = Path(args.input)
    if not source.exists():
        raise CliError(f"error: {source} does not exist")
    drafts_file = None
    if args.fhir_out:
        drafts_file = tempfile.NamedTemporaryFile(prefix="mbc-worklist-drafts-", suffix=".ndjson", delete=False)
    try:
        try:
            if args.engine == "spark":
                from app.worklist.spark import run_spark, spark_available

                ok, why = spark_available()
                if not ok:
                    raise CliError(f"error: --engine spark: {why}")
                result = run_spark(source, now=now, settings=settings, master=args.spark_master,
                                   progress=progress, drafts_sink=drafts_file, partitions=args.partitions)
            else:
                from app.worklist.local import run_local

                result = run_local(source, now=now, settings=settings, progress=progress,
                                   bucket_bytes=int(args.bucket_mb * 2**20), drafts_sink=drafts_file)
        except (OSError, ValueError) as exc:
            raise CliError(f"error: {exc}") from None
        written = []
        for fmt, path in output_paths(args.out, args.format).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            (write_csv if fmt == "csv" else write_ndjson)(result.rows, path)
            written.append(str(path))
        if drafts_file is not None:
            drafts_file.close()
            fhir_path = Path(args.fhir_out)
            fhir_path.parent.mkdir(parents=True, exist_ok=True)
            with open(drafts_file.name, "rb") as drafts:
                _, n = write_fhir(result.rows, drafts, fhir_path, now)
            written.append(f"{fhir_path} (List + {n:,} draft ServiceRequests)")
    finally:
        if drafts_file is not None:
            drafts_file.close()
            os.unlink(drafts_file.name)
    if not args.quiet:
        print(summary_table(result.rows, result.stats, result.elapsed))
        print("\nwrote: " + ", ".join(written))
    return 0
