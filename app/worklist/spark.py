"""Spark engine: the same per-patient evaluation, distributed with PySpark.

Plan (the same code runs on a cluster; here ``local[2]``):
1. NDJSON files are read with ``spark.read.text`` (one row per line; ``.gz`` works too), Bundle files with
   ``sparkContext.binaryFiles``. Medication files (resources that name no patient) are read with Spark, collected
   and broadcast: patients' MedicationRequests reference them.
2. NDJSON lines are keyed by patient id in the JVM (``from_json`` of only the fields that name the patient) and
   grouped with ``groupBy(patient).agg(collect_list(line))``; Bundles are parsed with orjson in a Python
   partition function (``urn:uuid`` resolution needs the whole Bundle), keyed, and grouped with ``groupByKey``.
   Either way the raw line (not a parsed dict) goes through the shuffle.
3. ``mapPartitions`` builds one RecordEvaluator per Python worker (cached in the worker process, which Spark reuses
   across tasks) and evaluates every patient of the partition with :func:`app.worklist.core.evaluate_group`,
   exactly as the local engine does.
4. The rows are collected and ranked in the driver (:func:`app.worklist.core.rank_rows`). Draft ServiceRequests,
   when asked for, are written by the executors with ``saveAsTextFile`` and streamed by the driver.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from app.worklist.core import WorklistRow, evaluate_group, parse_now, rank_rows, settings_from_payload, settings_payload
from app.worklist.local import WorklistResult
from app.worklist.readers import (
    ENGINE_TYPES,
    PATIENT_FIELDS,
    PATIENT_IN_URL,
    ReadStats,
    bundle_files,
    bundle_records,
    detect_format,
    ndjson_files,
    ndjson_record,
    prepare_group,
)

if TYPE_CHECKING:
    from app.service.evaluate import RecordEvaluator
    from app.settings import Settings

DEFAULT_MASTER = "local[2]"
PARTITION_BYTES = 32 * 1024 * 1024
_EVALUATORS: dict[str, RecordEvaluator] = {}


def spark_available() -> tuple[bool, str]:
    """(True, '') when pyspark imports and a Java runtime is on PATH or JAVA_HOME; else (False, why not)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False, "pyspark is not installed (pip install 'mbc-cds[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))):
        return False, "no Java runtime (java on PATH or JAVA_HOME) for Spark"
    return True, ""


def spark_session(master: str = DEFAULT_MASTER, *, progress: bool = True, app_name: str = "mbc-cds-worklist",
                  conf: dict[str, str] | None = None) -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "true" if progress else "false")
               .config("spark.python.worker.reuse", "true")
               .config("spark.driver.memory", os.environ.get("MBC_CDS_SPARK_DRIVER_MEMORY", "2g")))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# -- functions shipped to the executors (module level: pickled by reference) -----------------------------------
def _evaluator(settings_json: str) -> RecordEvaluator:
    evaluator = _EVALUATORS.get(settings_json)
    if evaluator is None:
        from app.service.factory import build_evaluator

        evaluator = build_evaluator(settings_from_payload(settings_json))
        _EVALUATORS[settings_json] = evaluator
    return evaluator


def _key_bundles(files: Iterable[tuple[str, bytes]], counters: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    stats = ReadStats()
    for _, data in files:
        yield from bundle_records(bytes(data), stats)
    _add(counters, stats)


def _add(counters: dict[str, Any], stats: ReadStats) -> None:
    for name, acc in counters.items():
        acc.add(getattr(stats, name))


def _medication_of(row: Any) -> tuple[str, dict[str, Any]] | None:
    kind, _, med = ndjson_record(row.value.encode())
    if kind == "medication" and med is not None and isinstance(med.get("id"), str):
        return f"Medication/{med['id']}", med
    return None


def _evaluate_partition(groups: Iterable[tuple[str, Iterable[bytes]]], *, settings_json: str, now_iso: str,
                        medications: Any, drafts: bool) -> Iterator[tuple[str, Any]]:
    evaluator = _evaluator(settings_json)
    now = parse_now(now_iso)
    meds = medications.value if medications is not None else None
    for pid, lines in groups:
        row, found = evaluate_group(evaluator, pid, prepare_group(lines, meds), now, drafts=drafts)
        yield "row", row
        for d in found:
            yield "draft", d


def _group_ndjson(spark: Any, files: list[str], n_parts: int) -> Any:
    """(patient id, [lines]) per patient, keyed and grouped in the JVM: ``from_json`` reads only the fields that
    name the patient (the same fields and reference forms as :func:`app.worklist.readers.patient_of`), and
    ``groupBy().agg(collect_list())`` shuffles the raw lines. Python only sees each patient's lines once, in the
    evaluation, instead of parsing every line twice and shuffling through Python (``rdd.groupByKey``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    ref = StructType([StructField("reference", StringType())])
    schema = StructType([StructField("resourceType", StringType()), StructField("id", StringType())]
                        + [StructField(name, ref) for name in PATIENT_FIELDS])
    j = F.from_json(F.col("value"), schema)

    def nonempty(col: Any) -> Any:
        return F.when(col != "", col)

    def pid_of(name: str) -> Any:
        target = j[name]["reference"]
        return F.coalesce(nonempty(F.regexp_extract(target, r"^Patient/([^/]+)", 1)),
                          nonempty(F.regexp_extract(target, PATIENT_IN_URL, 1)))

    pid = F.when(j["resourceType"] == "Patient", nonempty(j["id"])).otherwise(
        F.coalesce(*[pid_of(name) for name in PATIENT_FIELDS]))
    spark.conf.set("spark.sql.shuffle.partitions", str(n_parts))
    # keep the partition count: adaptive execution would merge small inputs into one Python task
    spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
    keyed = (spark.read.text(files)
             .select(F.col("value"), j["resourceType"].alias("type"), pid.alias("pid"))
             .where(F.col("type").isin(sorted(ENGINE_TYPES)) & F.col("pid").isNotNull()))
    return keyed.groupBy("pid").agg(F.collect_list("value").alias("lines")).rdd


# -- driver ------------------------------------------------------------------------------------------------------
def run_spark(path: str | Path, *, now: datetime, settings: Settings, master: str = DEFAULT_MASTER,
              spark: Any = None, progress: bool = True, drafts_sink: IO[bytes] | None = None,
              partitions: int | None = None, tmpdir: str | None = None) -> WorklistResult:
    t0 = time.perf_counter()
    path = Path(path)
    fmt = detect_format(path)
    own = spark is None
    if own:
        spark = spark_session(master, progress=progress)
    sc = spark.sparkContext
    try:
        counters = {name: sc.accumulator(0) for name in ("resources", "unparsable", "without_patient",
                                                          "other_types")}
        med_bc = None
        skipped: list[str] = []
        if fmt == "ndjson":
            files = ndjson_files(path)
            skipped = [f.name for t, f in files if t is not None and t not in ENGINE_TYPES]
            med_files = [str(f) for t, f in files if t == "Medication"]
            data_files = [str(f) for t, f in files if t != "Medication" and (t is None or t in ENGINE_TYPES)]
            if not data_files:
                raise ValueError(f"{path}: no NDJSON files of the resource types the engine reads")
            input_bytes = sum(os.path.getsize(f) for f in data_files + med_files)
            # Medications name no patient: from Medication files and from files that may mix types.
            med_sources = med_files + [str(f) for t, f in files if t is None]
            if med_sources:
                meds = dict(x for x in spark.read.text(med_sources).rdd.map(_medication_of).collect() if x)
                med_bc = sc.broadcast(meds)
            n_parts = partitions or max(sc.defaultParallelism * 2, math.ceil(input_bytes / PARTITION_BYTES))
            grouped = _group_ndjson(spark, data_files, n_parts)
        else:
            files_b = [str(f) for f in bundle_files(path)]
            if not files_b:
                raise ValueError(f"{path}: no Bundle files")
            input_bytes = sum(os.path.getsize(f) for f in files_b)
            n_in = max(sc.defaultParallelism, math.ceil(input_bytes / PARTITION_BYTES))
            n_parts = partitions or max(sc.defaultParallelism * 2, math.ceil(input_bytes / PARTITION_BYTES))
            grouped = sc.binaryFiles(",".join(files_b), minPartitions=n_in).mapPartitions(
                partial(_key_bundles, counters=counters)).groupByKey(numPartitions=n_parts)
        settings_json = settings_payload(settings)
        results = grouped.mapPartitions(partial(
            _evaluate_partition, settings_json=settings_json, now_iso=now.isoformat(), medications=med_bc,
            drafts=drafts_sink is not None))
        rows: list[WorklistRow] = []
        patients = 0
        n_drafts = 0
        if drafts_sink is None:
            for kind, value in results.collect():
                if kind == "row":
                    patients += 1
                    if value is not None:
                        rows.append(value)
        else:
            out_dir = tempfile.mkdtemp(prefix="mbc-worklist-spark-", dir=tmpdir)
            target = os.path.join(out_dir, "results")
            try:
                results.map(lambda kv: orjson.dumps(kv).decode()).saveAsTextFile(target)
                for part in sorted(glob.glob(os.path.join(target, "part-*"))):
                    with open(part, "rb") as f:
                        for line in f:
                            kind, value = orjson.loads(line)
                            if kind == "row":
                                patients += 1
                                if value is not None:
                                    rows.append(value)
                            else:
                                drafts_sink.write(orjson.dumps(value) + b"\n")
                                n_drafts += 1
            finally:
                shutil.rmtree(out_dir, ignore_errors=True)
        # read counters exist for Bundles (keyed in Python); NDJSON is keyed in the JVM
        stats: dict[str, Any] = {name: acc.value for name, acc in counters.items()} if fmt == "bundles" else {}
        stats.update(patients=patients, partitions=n_parts, files_skipped=skipped,
                     medications=len(med_bc.value) if med_bc is not None else 0)
        if progress:
            sys.stderr.write(f"worklist (spark {master}): {patients:,} patients evaluated\n")
        return WorklistResult(rank_rows(rows), stats, "spark", time.perf_counter() - t0, n_drafts)
    finally:
        if own:
            spark.stop()
