"""Unknown patient and unreachable FHIR server: one clear data-incomplete card, never silence; one line per
cause (DNS, refused, timeout, HTTP status), not per resource type; a summary that fits without being cut;
a warning when nothing could be checked. Against the local FHIR server process and an unused port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.clinical.gaps import ReadGap, gap_lines, unreadable_types
from app.data_requirements import prefetch_types
from app.main import create_app
from app.read_gaps import gaps_from_problems, gaps_summary
from cds_hooks.fallback import FetchProblem
from tests.conftest import NOW, SERVICE_URL, make_settings
from tests.fhir_server_fixture import local_fhir_server  # noqa: F401
from tests.served_app import serve_app

TYPES = 13  # resource types the service reads (prefetch keys; AllergyIntolerance since rules v2)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path_factory.mktemp("unreadable"), fhir_timeout_seconds=3,
                                   fhir_connect_timeout_seconds=2))
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        yield c


def hook(client: TestClient, fhir_server: str, patient_id: str) -> list[dict[str, Any]]:
    body = {"hook": "patient-view", "hookInstance": "0c0ffee0-1234-4abc-8def-000000000404",
            "fhirServer": fhir_server, "context": {"patientId": patient_id, "userId": "Practitioner/1"}}
    resp = client.post(SERVICE_URL, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def only_card(cards: list[dict[str, Any]]) -> dict[str, Any]:
    assert [c["source"]["topic"]["code"] for c in cards] == ["data-incomplete"], [c["summary"] for c in cards]
    card = cards[0]
    assert len(card["summary"]) < 140 and not card["summary"].endswith("…")
    return card


def why_lines(card: dict[str, Any]) -> list[str]:
    return [line for line in card["detail"].splitlines() if line.startswith("- could not be read:")]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unknown_patient_gives_one_clear_card(client: TestClient, local_fhir_server: str) -> None:  # noqa: F811
    card = only_card(hook(client, local_fhir_server, "nobody"))
    assert card["summary"] == "Patient nobody could not be read from the FHIR server: 404"
    assert card["indicator"] == "warning"
    assert why_lines(card) == ["- could not be read: Patient: the FHIR server did not find it (HTTP 404)"]


def test_a_refused_connection_is_one_line_not_one_per_type(client: TestClient) -> None:
    card = only_card(hook(client, f"http://127.0.0.1:{unused_port()}/fhir", "p1"))
    assert card["indicator"] == "warning"
    assert card["summary"] == ("FHIR server unreachable (connection refused): nothing could be read, "
                               "check the record directly")
    (line,) = why_lines(card)
    assert "refused the connection" in line and "Patient" in line and "Observation" in line
    assert line.count(", ") == TYPES - 1


def test_a_name_that_does_not_resolve_is_one_dns_line(client: TestClient) -> None:
    card = only_card(hook(client, "http://fhir.does-not-exist.invalid/r4", "p1"))
    assert card["summary"].startswith("FHIR server unreachable (DNS lookup failed)")
    (line,) = why_lines(card)
    assert "could not be resolved (DNS)" in line


def test_mbc_cds_hook_for_an_unknown_patient_is_not_silent(tmp_path: Path, local_fhir_server: str,  # noqa: F811
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with serve_app(tmp_path) as (base, _db):
        code = main(["hook", "--service", f"{base}/cds-services/mbc-palliative-care",
                     "--fhir-server", local_fhir_server, "--patient", "nobody", "--json"])
    assert code == 0
    cards = json.loads(capsys.readouterr().out)["cards"]
    assert only_card(cards)["summary"] == "Patient nobody could not be read from the FHIR server: 404"


# ------------------------------------------------------------------------------------- typed gaps, unit


def test_gaps_group_by_cause_and_status() -> None:
    types = {"patient": "Patient", "conditions": "Condition", "observations": "Observation",
             "encounters": "Encounter"}
    problems = [FetchProblem("patient", "http", 404), FetchProblem("conditions", "timeout"),
                FetchProblem("observations", "timeout"), FetchProblem("encounters", "http", 500)]
    lines = gap_lines(gaps_from_problems(problems, types))
    assert lines == ["Patient: the FHIR server did not find it (HTTP 404)",
                     "Condition, Observation: the FHIR server did not answer in time",
                     "Encounter: the FHIR server answered with an error (HTTP 500)"]


def test_a_first_page_only_is_incomplete_not_unreadable() -> None:
    (gap,) = gaps_from_problems([FetchProblem("observations", "incomplete")], {"observations": "Observation"})
    assert gap == ReadGap("Observation", "incomplete", "first-page-only")


# every type the service searches for, longest name first (the hardest to fit), then the skipped-entries line
# (None: entries under prefetch keys the service did not ask for, "Extra prefetch data" on the card)
_GAP_NAMES: list[str | None] = [*sorted(set(prefetch_types().values()) - {"Patient"}, key=lambda t: (-len(t), t)),
                                None]


@pytest.mark.parametrize("n", range(1, len(_GAP_NAMES) + 1))
def test_the_summary_fits_without_being_cut(n: int) -> None:
    names = _GAP_NAMES[:n]
    gaps = [ReadGap(t, "unreadable", "http", 1, 500) for t in names]
    summary = gaps_summary(gaps, "p1")
    assert len(summary) < 140 and "…" not in summary and summary.startswith("Could not read ")
    assert names[0] is not None and names[0] in summary
    long_id = "x" * 200
    assert len(gaps_summary([ReadGap("Patient", "unreadable", "http", 1, 404)], long_id)) < 140


def test_a_server_that_never_answers_is_one_timeout_line() -> None:
    types = {"patient": "Patient", "conditions": "Condition", "observations": "Observation"}
    gaps = gaps_from_problems([FetchProblem(k, "timeout") for k in types], types)
    assert gap_lines(gaps) == ["Patient, Condition, Observation: the FHIR server did not answer in time"]
    assert gaps_summary(gaps, "p1").startswith("FHIR server did not answer in time")


def test_entries_under_keys_not_asked_for_are_a_typed_gap_named_only_on_the_card() -> None:
    """No display text stands in for a resource type: the gap has none, and the card names where it came from."""
    types = {"conditions": "Condition"}
    gaps = gaps_from_problems([], types, {"conditions": 1}, extra_skipped=2)
    assert gaps == [ReadGap("Condition", "incomplete", "not-resources", 1),
                    ReadGap(None, "incomplete", "not-resources", 2)]
    assert gap_lines(gaps) == ["Condition: 1 Bundle entry without a FHIR resource, skipped",
                               "Extra prefetch data: 2 Bundle entries without a FHIR resource, skipped"]
    assert unreadable_types(gaps) == {"Condition"}
    assert gaps_summary(gaps[1:], "p1") == ("Could not read Extra prefetch data (invalid entries): cards may be "
                                            "missing, check the record directly")


def test_the_fact_pass_gaps_join_the_fetch_gaps_on_the_evaluation() -> None:
    """What the fact pass could not read is typed like a fetch gap, counted per type and cause, and reaches the
    guards, the card lines and the summary."""
    from datetime import timedelta

    from app.clinical.evaluation import evaluate_patient
    from app.read_gaps import unreadable_summary
    from terminology import get_terminology

    broken = {"resourceType": "Condition", "id": "c-x", "code": {"text": "seizure"}, "bodySite": 5}
    fetched = ReadGap("Observation", "incomplete", "first-page-only")
    ev = evaluate_patient([broken, dict(broken, id="c-y"), 42], patient_id="p1", now=NOW,
                          terminology=get_terminology(), acute_window=timedelta(days=30),
                          assessment_window=timedelta(days=90), acp_revisit=timedelta(days=182), gaps=[fetched])
    assert ev.gaps == (fetched, ReadGap("Condition", "incomplete", "unreadable-structure", 2),
                       ReadGap(None, "incomplete", "not-a-resource", 1))
    assert ev.unreadable_types == {"Observation", "Condition"}
    assert gap_lines(ev.gaps) == [
        "Observation: only the first page was sent and there is no FHIR server to read the rest from",
        "2 x Condition with an unreadable structure", "an entry that is not a FHIR resource"]
    assert unreadable_summary(ev).startswith("Could not read Observation (first page only)")
    alone = evaluate_patient([broken, 42], patient_id="p1", now=NOW, terminology=get_terminology(),
                             acute_window=timedelta(days=30), assessment_window=timedelta(days=90),
                             acp_revisit=timedelta(days=182))
    assert unreadable_summary(alone) == ("Could not read 2 kinds of resources in the record: cards may be missing, "
                                         "check the record directly")
