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


# -- timeline ------------------------------------------------------------------------------------------------

def test_evaluate_writes_the_timeline_as_svg_or_json(bundle_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import xml.etree.ElementTree as ET

    svg = tmp_path / "course.svg"
    assert main(["evaluate", str(bundle_file), "--now", "2026-11-20T10:00:00Z", "--timeline", str(svg),
                 "--fhir-base", "https://fhir.example/r4/"]) == 0
    assert "cards" in orjson.loads(capsys.readouterr().out)
    root = ET.fromstring(svg.read_text())
    links = root.findall(".//{http://www.w3.org/2000/svg}a")
    assert links and all(a.get("href", "").startswith("https://fhir.example/r4/") for a in links)
    as_json = tmp_path / "course.json"
    assert main(["evaluate", str(bundle_file), "--now", "2026-11-20T10:00:00Z", "--timeline", str(as_json)]) == 0
    timeline = orjson.loads(as_json.read_bytes())
    assert timeline["end"].startswith("2026-11-20") and timeline["phases"][-1]["end"] == timeline["end"]
    capsys.readouterr()
    assert main(["evaluate", str(bundle_file), "--timeline", str(tmp_path / "course.png")]) == 2
    assert "SVG" in capsys.readouterr().err


# -- errors: one or two lines that say what to do, exit 2 for usage / configuration ------------------------------

def _short_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and 1 <= len(err.splitlines()) <= 3, err
    return err


def test_feedback_report_names_the_database_and_the_demo_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MBC_CDS_DATABASE_URL", "")
    monkeypatch.delenv("MBC_CDS_DATABASE_URL")
    from app.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["feedback-report"]) == 2
        err = _short_error(capsys)
        assert "mbc-cds.db" in err and "--demo" in err
        assert not (tmp_path / "mbc-cds.db").exists(), "a report must not create an empty database"
        # a database without the schema (e.g. created by something else): no "no such table" traceback
        (tmp_path / "mbc-cds.db").write_bytes(b"")
        assert main(["feedback-report"]) == 2
        assert "no feedback table" in _short_error(capsys)
        # the demo's database, by --demo
        assert main(["migrate", "--demo"]) == 0
        assert (tmp_path / "mbc-cds-demo.db").exists()
        capsys.readouterr()
        assert main(["feedback-report", "--demo", "--json"]) == 0
        captured = capsys.readouterr()
        assert orjson.loads(captured.out) == {"rules": [], "snoozes": []} and "mbc-cds-demo.db" in captured.err
    finally:
        get_settings.cache_clear()


def test_migrate_against_an_unreachable_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    from tests.served_app import free_port

    url = f"postgresql+psycopg://mbc:secret@127.0.0.1:{free_port()}/nothing"
    assert main(["migrate", "--database-url", url]) == 2
    err = _short_error(capsys)
    assert "cannot connect" in err and "secret" not in err and "--database-url" in err


def test_serve_with_a_missing_clients_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from app.settings import get_settings

    monkeypatch.setenv("MBC_CDS_REQUIRE_JWT", "true")
    monkeypatch.setenv("MBC_CDS_CLIENTS_FILE", str(tmp_path / "missing-clients.json"))
    monkeypatch.setenv("MBC_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    get_settings.cache_clear()
    try:
        assert main(["serve", "--port", "1"]) == 2
        err = _short_error(capsys)
        assert "missing-clients.json" in err and "MBC_CDS_CLIENTS_FILE" in err
        monkeypatch.setenv("MBC_CDS_ACUTE_WINDOW_DAYS", "soon")
        get_settings.cache_clear()
        assert main(["serve"]) == 2
        assert "MBC_CDS_ACUTE_WINDOW_DAYS" in _short_error(capsys)
    finally:
        get_settings.cache_clear()


def test_help_lists_every_command_and_options_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)  # type: ignore[union-attr]
    assert {"serve", "evaluate", "migrate", "feedback-report", "demo", "load", "hook", "worklist"} <= names
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in names)
    for name in ("serve", "migrate", "demo", "feedback-report", "evaluate"):
        for action in sub.choices[name]._actions:  # type: ignore[union-attr]
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_demo_prints_the_banner_last_and_its_curl_line_is_plain_sh(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    import subprocess
    import time

    import uvicorn

    from app.cli.demo import demo_banner_lines
    from app.settings import get_settings
    from tests.served_app import free_port

    started: list[int] = []

    def fake_run(server: uvicorn.Server) -> None:
        started.append(server.config.port)
        server.started = True
        time.sleep(0.5)  # the banner thread prints once the server says it is listening

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    for name in ("MBC_CDS_DATABASE_URL", "MBC_CDS_REQUIRE_JWT"):
        monkeypatch.setenv(name, "")  # so that what `demo` sets is undone after the test
        monkeypatch.delenv(name)
    port = free_port()
    try:
        assert main(["demo", "--port", str(port)]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert started == [port]
    last_card = out.rindex("rule: ")
    assert out.index(f"card viewer:      http://127.0.0.1:{port}/") > last_card
    assert "feedback-report --demo" in out[last_card:]
    curl = next(line for line in demo_banner_lines("http://127.0.0.1:8080", "sqlite:///./x.db") if "curl" in line)
    command = curl.split(":", 1)[1].strip()
    assert "python3 " in command and "<(" not in command
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", "-c", command], check=False).returncode == 0
