"""The mbc-cds command line (in-process)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.cli import main

SCENARIO = Path(__file__).parent / "scenarios" / "15-acute-a5-pain7-tramadol-senna.json"


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    out = tmp_path / "bundle.json"
    out.write_bytes(orjson.dumps(orjson.loads(SCENARIO.read_bytes())["bundle"]))
    return out


def test_evaluate_prints_cards_as_json(bundle_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(bundle_file), "--now", "2026-11-20T10:00:00Z"]) == 0
    cards = orjson.loads(capsys.readouterr().out)["cards"]
    codes = [c["source"]["topic"]["code"] for c in cards]
    assert "mbc-overview" in codes and "pain-ladder-step-up" in codes


def test_evaluate_pretty_table(bundle_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(bundle_file), "--now", "2026-11-20T10:00:00Z", "--pretty"]) == 0
    out = capsys.readouterr().out
    assert "rule: pain-ladder-step-up" in out and "[warning ]" in out


def test_evaluate_rejects_a_file_that_is_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"resourceType": "Patient", "id": "p"}')
    assert main(["evaluate", str(bad)]) == 2
    assert "Bundle" in capsys.readouterr().err
    missing = tmp_path / "missing.json"
    assert main(["evaluate", str(missing)]) == 2


def test_migrate_and_feedback_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    capsys.readouterr()
    assert main(["feedback-report", "--database-url", url, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"rules": [], "snoozes": []}
