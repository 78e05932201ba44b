"""Clinical scenarios (tests/scenarios/*.json): rule ids that must and must not fire, per resource level."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.engine.knowledge import compile_knowledge
from app.hook import HookProcessor
from app.settings import Settings
from cds_hooks.models import Card
from terminology import get_terminology
from tests.conftest import SERVICE_URL, hook_request, make_settings

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))


def _resources(s: dict) -> list[dict]:
    """A scenario holds one patient's record as a FHIR Bundle."""
    return [e["resource"] for e in s["bundle"]["entry"]]


def _load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _patient_id(s: dict) -> str:
    return next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")


def _processor(level: str) -> HookProcessor:
    return HookProcessor(Settings(require_jwt=False, resource_level=level), get_terminology(),
                         compile_knowledge(), None)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    s = _load(path)
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    outcome = _processor(s.get("resource_level", "enhanced")).evaluate(_resources(s), _patient_id(s), now)
    fired = [c["source"]["topic"]["code"] for c in outcome.cards]
    if s.get("no_cards"):
        assert fired == [], s["description"]
        return
    assert len(fired) == len(set(fired)), "one card per rule id"
    for rule in s.get("must_fire", []):
        assert rule in fired, f"{rule} should fire: {s['description']} (fired: {fired})"
    for rule in s.get("must_not_fire", []):
        assert rule not in fired, f"{rule} should not fire: {s['description']}"
    for rule, indicator in (s.get("indicators") or {}).items():
        card = next(c for c in outcome.cards if c["source"]["topic"]["code"] == rule)
        assert card["indicator"] == indicator, rule
    for card in outcome.cards:
        Card.model_validate(card)
        assert len(card["summary"]) < 140
        assert "**Source:**" in card["detail"]
    _check_texts_and_drafts(s, outcome.cards)


def _drafted(cards: list[dict]) -> set[str]:
    """ActivityDefinition ids behind every drafted resource of every card."""
    out: set[str] = set()
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                canonical = (action.get("resource") or {}).get("instantiatesCanonical") or []
                for url in [canonical] if isinstance(canonical, str) else canonical:
                    out.add(url.rsplit("/", 1)[-1])
    return out


def _check_texts_and_drafts(s: dict, cards: list[dict]) -> None:
    """Optional v2 assertions: text the card must (not) say, drafts that must (not) be offered."""
    by_rule = {c["source"]["topic"]["code"]: c for c in cards}
    for key, field, want in (("detail_contains", "detail", True), ("summary_contains", "summary", True),
                             ("summary_not_contains", "summary", False)):
        for rule, needles in (s.get(key) or {}).items():
            text = by_rule[rule][field].lower()
            for needle in needles:
                assert (needle.lower() in text) == want, f"{rule} {field} {'lacks' if want else 'has'} {needle!r}"
    drafted = _drafted(cards)
    for activity in s.get("must_draft", []):
        assert activity in drafted, f"{activity} should be drafted: {s['description']}"
    for activity in s.get("must_not_draft", []):
        assert activity not in drafted, f"{activity} must not be drafted: {s['description']}"


def test_every_rule_fires_somewhere_and_is_silent_somewhere() -> None:
    # Order-time rules have their own positive and negative cases (tests/test_orders.py).
    rules = {r.id for r in compile_knowledge().rules if "patient-view" in r.hooks}
    fired_somewhere: set[str] = set()
    silent_somewhere: set[str] = set()
    for path in SCENARIOS:
        s = _load(path)
        fired_somewhere |= set(s.get("must_fire", []))
        silent_somewhere |= set(s.get("must_not_fire", []))
        if s.get("no_cards"):
            silent_somewhere |= set(rules)
    assert rules - {"data-incomplete"} <= fired_somewhere
    assert rules <= silent_somewhere


@pytest.mark.parametrize("path", SCENARIOS[:12], ids=[p.stem for p in SCENARIOS[:12]])
def test_scenario_through_http(path: Path, tmp_path: Path) -> None:
    """The same answer through the real endpoint (prefetch as an EHR sends it)."""
    from app.main import create_app

    s = _load(path)
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    app = create_app(make_settings(tmp_path, resource_level=s.get("resource_level", "enhanced")))
    with TestClient(app) as client:
        app.state.runtime.clock = lambda: now
        resp = client.post(SERVICE_URL, json=hook_request(_resources(s), _patient_id(s)))
    assert resp.status_code == 200, resp.text
    fired = [c["source"]["topic"]["code"] for c in resp.json()["cards"]]
    direct = _processor(s.get("resource_level", "enhanced")).evaluate(_resources(s), _patient_id(s), now)
    assert fired == [c["source"]["topic"]["code"] for c in direct.cards]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_is_a_valid_fhir_bundle(path: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(_load(path)["bundle"])


def _empty_values(value: object, path: str = "") -> list[str]:
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _empty_values(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _empty_values(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_cards_carry_no_empty_optional_fields(path: Path) -> None:
    """CDS Hooks 2.0: optional fields without a value are left out (the hook response is not pruned)."""
    s = _load(path)
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    for level in ("basic", "enhanced", "maximal"):
        for card in _processor(level).evaluate(_resources(s), _patient_id(s), now).cards:
            assert _empty_values(card) == [], card["source"]["topic"]["code"]


LEVELS = ("basic", "limited", "enhanced", "maximal")


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_at_every_resource_level(path: Path) -> None:
    """A rule that must fire does so at every level at or above its own; a silent rule stays silent at every
    level up to the scenario's (above it, a rule held back by the level may legitimately appear)."""
    s = _load(path)
    if s.get("no_cards"):
        return
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    rule_level = {r.id: r.level for r in compile_knowledge().rules}
    own = LEVELS.index(s.get("resource_level", "enhanced"))
    for i, level in enumerate(LEVELS):
        processor = HookProcessor(Settings(require_jwt=False, resource_level=level, info_card_cap=99),
                                  get_terminology(), compile_knowledge(), None)
        fired = {c["source"]["topic"]["code"] for c in processor.evaluate(_resources(s), _patient_id(s), now).cards}
        for rule in s.get("must_fire", []):
            if LEVELS.index(rule_level[rule]) <= i:
                assert rule in fired, f"{rule} should fire at {level}"
            else:
                assert rule not in fired, f"{rule} is above {level}"
        if i <= own:
            for rule in s.get("must_not_fire", []):
                assert rule not in fired, f"{rule} should not fire at {level}"
