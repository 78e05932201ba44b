"""Clinical scenarios (tests/scenarios/*.json): rule ids that must and must not fire, per resource level."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.service.evaluate import RecordEvaluator
from app.service.factory import build_evaluator
from app.service.knowledge import load_knowledge
from app.settings import Settings
from cds_hooks.models import Card
from terminology import get_terminology
from tests.conftest import SERVICE_URL, hook_request, make_settings

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))
LEVELS = ("basic", "limited", "enhanced", "maximal")


def _resources(s: dict) -> list[dict]:
    """A scenario holds one patient's record as a FHIR Bundle."""
    return [e["resource"] for e in s["bundle"]["entry"]]


def _load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _patient_id(s: dict) -> str:
    return next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")


def _evaluator(level: str) -> RecordEvaluator:
    return build_evaluator(Settings(require_jwt=False, resource_level=level), terminology=get_terminology())


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    s = _load(path)
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    outcome = _evaluator(s.get("resource_level", "enhanced")).evaluate(_resources(s), _patient_id(s), now)
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


def _drafts(card: dict) -> list[str]:
    """The ActivityDefinition ids a card's suggestions instantiate."""
    out = []
    for sugg in card.get("suggestions") or []:
        for action in sugg.get("actions") or []:
            canonical = action["resource"].get("instantiatesCanonical")
            canonical = canonical[0] if isinstance(canonical, list) else canonical
            out.append(str(canonical).rsplit("/", 1)[-1])
    return out


def _drafted(cards: list[dict]) -> set[str]:
    """ActivityDefinition ids behind every drafted resource of every card."""
    return {d for card in cards for d in _drafts(card)}


def _check_texts_and_drafts(s: dict, cards: list[dict]) -> None:
    """Optional scenario checks: words a card must (not) say, drafts it must (not) offer."""
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
    for rule, words in (s.get("text_must_contain") or {}).items():
        text = by_rule[rule]["summary"] + "\n" + by_rule[rule]["detail"]
        for word in words:
            assert word.lower() in text.lower(), f"{rule} should say {word!r}"
    for rule, words in (s.get("text_must_not_contain") or {}).items():
        if rule not in by_rule:
            continue
        text = by_rule[rule]["summary"] + "\n" + by_rule[rule]["detail"]
        for word in words:
            assert word.lower() not in text.lower(), f"{rule} should not say {word!r}"
    for rule, drafts in (s.get("drafts_include") or {}).items():
        for draft in drafts:
            assert draft in _drafts(by_rule[rule]), f"{rule} should offer {draft}"
    for rule, drafts in (s.get("drafts_exclude") or {}).items():
        if rule in by_rule:
            for draft in drafts:
                assert draft not in _drafts(by_rule[rule]), f"{rule} should not offer {draft}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_alert_load(path: Path) -> None:
    """Section 6 v2 at every level: no patient without an emergency above 8 cards; in emergency mode no info card
    but the overview (and data-incomplete), the held-back ones listed on it; every draft target on one card only,
    the palliative care referral only on its own card; the overview is info."""
    s = _load(path)
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    for level in LEVELS:
        cards = _evaluator(level).evaluate(_resources(s), _patient_id(s), now).cards
        if not cards:
            continue
        tiers = {r.id: r.tier for r in load_knowledge().rules}
        critical = any(c["indicator"] == "critical" for c in cards)
        if not critical:
            assert len(cards) <= 8, (level, [c["source"]["topic"]["code"] for c in cards])
        else:
            infos = [c["source"]["topic"]["code"] for c in cards if c["indicator"] == "info"]
            assert all(tiers[r] in ("overview", "uncapped") for r in infos), (level, infos)
        targets = [d for c in cards for d in _drafts(c)]
        assert len(targets) == len(set(targets)), (level, targets)
        for card in cards:
            rule = card["source"]["topic"]["code"]
            if rule != "referral-palliative-care":
                assert "referral-palliative-care" not in _drafts(card), (level, rule)
            if rule == "mbc-overview":
                assert card["indicator"] == "info"


def test_every_rule_fires_somewhere_and_is_silent_somewhere() -> None:
    # Order-time rules have their own positive and negative cases (tests/test_orders.py).
    rules = {r.id for r in load_knowledge().rules if "patient-view" in r.hooks}
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
    direct = _evaluator(s.get("resource_level", "enhanced")).evaluate(_resources(s), _patient_id(s), now)
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
        for card in _evaluator(level).evaluate(_resources(s), _patient_id(s), now).cards:
            assert _empty_values(card) == [], card["source"]["topic"]["code"]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_at_every_resource_level(path: Path) -> None:
    """A rule that must fire does so at every level at or above its own; a silent rule stays silent at every
    level up to the scenario's (above it, a rule held back by the level may legitimately appear)."""
    s = _load(path)
    if s.get("no_cards"):
        return
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    rule_level = {r.id: r.level for r in load_knowledge().rules}
    own = LEVELS.index(s.get("resource_level", "enhanced"))
    for i, level in enumerate(LEVELS):
        evaluator = build_evaluator(Settings(require_jwt=False, resource_level=level, info_card_cap=99, card_budget=99),
                                    terminology=get_terminology())
        fired = {c["source"]["topic"]["code"] for c in evaluator.evaluate(_resources(s), _patient_id(s), now).cards}
        for rule in s.get("must_fire", []):
            if LEVELS.index(rule_level[rule]) <= i:
                assert rule in fired, f"{rule} should fire at {level}"
            else:
                assert rule not in fired, f"{rule} is above {level}"
        if i <= own:
            for rule in s.get("must_not_fire", []):
                assert rule not in fired, f"{rule} should not fire at {level}"
