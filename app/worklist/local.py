"""In-process engine: stream the population patient by patient through one RecordEvaluator."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from app.worklist.core import WorklistRow, evaluate_group, rank_rows
from app.worklist.output import Progress
from app.worklist.readers import DEFAULT_BUCKET_BYTES, PopulationReader

if TYPE_CHECKING:
    from app.service.evaluate import RecordEvaluator
    from app.settings import Settings


@dataclass
class WorklistResult:
    rows: list[WorklistRow]                     # ranked, patients with at least one card
    stats: dict[str, Any] = field(default_factory=dict)
    engine: str = "local"
    elapsed: float = 0.0
    drafts: int = 0


def run_local(path: str | Path, *, now: datetime, settings: Settings, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
              progress: bool = True, drafts_sink: IO[bytes] | None = None, tmpdir: str | None = None,
              evaluator: RecordEvaluator | None = None) -> WorklistResult:
    t0 = time.perf_counter()
    reader = PopulationReader(path, bucket_bytes=bucket_bytes, tmpdir=tmpdir)
    if evaluator is None:
        from app.service.factory import build_evaluator  # not at import: `mbc-cds --help` imports this package

        evaluator = build_evaluator(settings)
    bar = Progress(reader.patient_count_hint(), enabled=progress)
    rows: list[WorklistRow] = []
    n_drafts = 0
    try:
        for group in reader:
            row, drafts = evaluate_group(evaluator, group.patient_id, group.resources, now,
                                         drafts=drafts_sink is not None)
            if row is not None:
                rows.append(row)
            if drafts_sink is not None:
                for d in drafts:
                    drafts_sink.write(orjson.dumps(d) + b"\n")
                    n_drafts += 1
            bar.update()
    finally:
        bar.close()
    stats = reader.stats.as_dict()
    return WorklistResult(rank_rows(rows), stats, "local", time.perf_counter() - t0, n_drafts)
