"""The Spark engine gives the same worklist as the in-process engine (skipped without pyspark or Java)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.service.evaluate import RecordEvaluator
from app.service.factory import build_evaluator
from app.worklist.core import make_settings
from app.worklist.generate import generate
from app.worklist.local import run_local
from app.worklist.spark import spark_available
from tests.conftest import NOW

_OK, _WHY = spark_available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"Spark engine not testable here: {_WHY}")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from app.worklist.spark import spark_session

    session = spark_session("local[2]", progress=False, app_name="mbc-cds-worklist-tests",
                            conf={"spark.driver.memory": "1g"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def evaluator() -> RecordEvaluator:
    return build_evaluator(make_settings())


def _drafts(sink: Path) -> list[dict[str, Any]]:
    return sorted((orjson.loads(line) for line in sink.read_bytes().splitlines()), key=lambda d: d["id"])


@pytest.mark.parametrize("fmt", ["ndjson", "bundles"])
def test_spark_and_local_give_the_same_worklist(fmt: str, spark: Any, evaluator: RecordEvaluator,
                                                tmp_path: Path) -> None:
    from app.worklist.spark import run_spark

    generate(tmp_path / "pop", 80, seed=21, now=NOW, filler=2, fmt=fmt, split=150)
    with open(tmp_path / "local.ndjson", "wb") as sink:
        local = run_local(tmp_path / "pop", now=NOW, settings=make_settings(), progress=False, evaluator=evaluator,
                          drafts_sink=sink)
    with open(tmp_path / "spark.ndjson", "wb") as sink:
        distributed = run_spark(tmp_path / "pop", now=NOW, settings=make_settings(), spark=spark, progress=False,
                                drafts_sink=sink)
    assert distributed.engine == "spark" and distributed.stats["patients"] == 80
    assert local.rows and distributed.rows == local.rows
    assert distributed.drafts == local.drafts > 0
    assert _drafts(tmp_path / "spark.ndjson") == _drafts(tmp_path / "local.ndjson")


def test_spark_without_drafts_collects_rows(spark: Any, evaluator: RecordEvaluator, tmp_path: Path) -> None:
    from app.worklist.spark import run_spark

    generate(tmp_path / "pop", 30, seed=4, now=NOW, filler=0)
    local = run_local(tmp_path / "pop", now=NOW, settings=make_settings("basic"), progress=False)
    distributed = run_spark(tmp_path / "pop", now=NOW, settings=make_settings("basic"), spark=spark,
                            progress=False, partitions=3)
    assert distributed.rows == local.rows
    assert distributed.stats["partitions"] == 3
