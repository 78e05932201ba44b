"""Population worklist (issue 7): evaluate every patient of a Bulk Data export or a directory of Bundles with the
hook's own engine and rank who needs palliative care now.

- :mod:`app.worklist.readers`: NDJSON / Bundle input, grouped by patient with bounded memory
- :mod:`app.worklist.core`: one row per patient from :meth:`app.service.evaluate.RecordEvaluator.evaluate`; ranking
- :mod:`app.worklist.local` / :mod:`app.worklist.spark`: the in-process and the PySpark engines
- :mod:`app.worklist.output`: CSV, NDJSON, FHIR List + draft ServiceRequests, progress, summary table
- :mod:`app.worklist.generate`: synthetic populations built from the sample patients
- :mod:`app.cli.worklist`: the ``mbc-cds worklist`` command
"""

from app.worklist.core import COLUMNS, WorklistRow, build_row, evaluate_group, rank_rows, tier_of
from app.worklist.local import WorklistResult, run_local
from app.worklist.readers import PopulationReader

__all__ = ["COLUMNS", "PopulationReader", "WorklistResult", "WorklistRow", "build_row", "evaluate_group",
           "rank_rows", "run_local", "tier_of"]
