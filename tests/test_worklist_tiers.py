"""Worklist tiers are PlanDefinition data (CodeSystem mbc-cds-worklist-tiers + the worklist-tier extension), checked
at start-up; the Spark workers rebuild the driver's whole Settings."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from app.engine.predicates import KnowledgeError
from app.service.knowledge import load_knowledge
from app.settings import Settings
from app.worklist.core import make_settings, settings_from_payload, settings_payload
from plandefinitions.loader import WORKLIST_TIER_URL, ArtifactError, Artifacts, load_artifacts
from plandefinitions.worklist_tiers import CODE_SYSTEM_ID, worklist_tiers


def _artifacts_with(change: Callable[[Artifacts], None]) -> Artifacts:
    copied = Artifacts(by_type=copy.deepcopy(load_artifacts().by_type))
    change(copied)
    return copied


def _concepts(a: Artifacts) -> dict[str, dict[str, Any]]:
    system = a.get("CodeSystem", CODE_SYSTEM_ID)
    assert system is not None
    return {c["code"]: c for c in system["concept"]}


def _set_property(concept: dict[str, Any], code: str, value: dict[str, Any]) -> None:
    concept["property"] = [p for p in concept.get("property", []) if p["code"] != code] + [{"code": code, **value}]


def test_ranks_labels_and_phases_come_from_the_code_system() -> None:
    tiers = worklist_tiers().tiers
    assert [(t.rank, t.code) for t in tiers] == [(1, "emergency"), (2, "acute-no-palliative-care"),
                                                 (3, "acp-missing"), (4, "other")]
    assert [t.phase for t in tiers] == [None, "acute", None, None]

    def swap(a: Artifacts) -> None:
        c = _concepts(a)
        _set_property(c["acp-missing"], "rank", {"valueInteger": 2})
        _set_property(c["acute-no-palliative-care"], "rank", {"valueInteger": 3})

    swapped = worklist_tiers(_artifacts_with(swap))
    assert [t.code for t in swapped.tiers] == ["emergency", "acp-missing", "acute-no-palliative-care", "other"]


def test_a_tier_with_a_phase_holds_only_in_that_phase() -> None:
    tiers = worklist_tiers()
    acute_only, acp = tiers.get("acute-no-palliative-care"), tiers.get("acp-missing")
    assert tiers.of([acute_only, acp], "acute").code == "acute-no-palliative-care"
    assert tiers.of([acute_only, acp], "stable").code == "acp-missing"
    assert tiers.of([acute_only], "unknown") == tiers.last
    assert tiers.of([None], "acute") == tiers.last


def test_the_emergencies_column_and_the_first_tier_name_the_same_rules() -> None:
    """`emergencies` lists the card-tier emergency rules; tier 1 must be exactly those."""
    first = worklist_tiers().tiers[0]
    rules = load_knowledge().rules
    assert {r.id for r in rules if r.emergency} == {r.id for r in rules if r.worklist_tier == first}


def test_an_unknown_worklist_tier_code_stops_start_up() -> None:
    def rename(a: Artifacts) -> None:
        for plan in a.of("PlanDefinition"):
            for action in plan.get("action") or []:
                for ext in action.get("extension") or []:
                    if ext["url"] == WORKLIST_TIER_URL and ext["valueCode"] == "acp-missing":
                        ext["valueCode"] = "acp-absent"

    with pytest.raises(KnowledgeError, match="worklist-tier must be one of"):
        load_knowledge(_artifacts_with(rename))


def test_a_tier_phase_the_clinical_code_does_not_decide_stops_start_up() -> None:
    def bad_phase(a: Artifacts) -> None:
        _set_property(_concepts(a)["acute-no-palliative-care"], "phase", {"valueCode": "terminal"})

    with pytest.raises(KnowledgeError, match="'terminal' is not one of"):
        load_knowledge(_artifacts_with(bad_phase))


@pytest.mark.parametrize("change, message", [
    (lambda c: _set_property(c["other"], "rank", {"valueInteger": 1}), "share a code or a rank"),
    (lambda c: c["acp-missing"].pop("property"), "needs a rank"),
    (lambda c: _set_property(c["other"], "phase", {"valueCode": "stable"}), "cannot name a phase"),
])
def test_a_code_system_without_a_total_order_stops_start_up(
        change: Callable[[dict[str, dict[str, Any]]], None], message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        worklist_tiers(_artifacts_with(lambda a: change(_concepts(a))))


def test_spark_workers_rebuild_exactly_the_driver_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every setting travels, secrets and site-local codes included; the worker's environment changes nothing."""
    driver = make_settings("limited", local_codes="/srv/site/local-codes.json", uuid_secret="driver-uuid-secret",
                           audit_salt="driver-salt", acute_window_days=21, info_card_cap=2, card_budget=6,
                           snooze_data_wrong_days=7)
    for name, value in (("ACUTE_WINDOW_DAYS", "99"), ("UUID_SECRET", "worker-secret"), ("LOCAL_CODES", "/other"),
                        ("RESOURCE_LEVEL", "maximal")):
        monkeypatch.setenv(f"MBC_CDS_{name}", value)
    rebuilt = settings_from_payload(settings_payload(driver))
    assert rebuilt == driver
    assert rebuilt.uuid_key() == driver.uuid_key() == b"driver-uuid-secret"
    assert rebuilt.model_dump_json() == driver.model_dump_json()  # RecordEvaluator's cache key
    assert Settings().acute_window_days == 99  # the environment is set: the payload, not it, decided
