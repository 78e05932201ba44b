"""Level-true text (clinical-rules section 6 v2): at every resource level, every rule's summary and detail name
only what that level offers. Every rule is rendered at every level for every scenario patient (conditions
bypassed, so that rules that rarely fire are checked too), and the advice text is searched for the words of
every suggestion the level withholds."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path

import orjson
import pytest

from app.engine.context import TemplateValues
from app.engine.engine import Engine, EngineOptions
from app.engine.knowledge import Knowledge
from app.service.factory import build_evaluator
from app.service.knowledge import SERVICE_VOCABULARY, load_knowledge
from app.settings import RESOURCE_LEVELS, Settings
from terminology import get_terminology

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))

# Words that belong to a suggestion: a card may use them only where the level offers that suggestion. Drug names
# a patient may already take (codeine, tramadol) are patient facts, not advice: they are not listed.
WORDS: dict[str, tuple[str, ...]] = {
    "imaging-mri-whole-spine": ("MRI",),
    "referral-radiotherapy": ("radiotherapy",),
    "referral-radiotherapy-urgent": ("radiotherapy",),
    "referral-radiotherapy-brain": ("radiotherapy",),
    "referral-stereotactic-radiotherapy": ("stereotactic",),
    "referral-neurosurgery": ("neurosurg", "surgery followed by"),
    "referral-pain-specialist": ("pain specialist",),
    "medication-bisphosphonate-hypercalcaemia": ("intravenous bisphosphonate", "IV bisphosphonate"),
    "medication-bone-modifying-agent": ("bisphosphonate", "denosumab"),
    "procedure-thoracentesis": ("thoracentesis", "drain"),
    "oxygen-therapy": ("oxygen",),
    "referral-biliary-drainage": ("stent", "drainage"),
    "referral-orthopaedic-surgeon": ("orthopaedic surgeon",),
    "referral-palliative-care": ("specialist palliative care", "refer to specialist"),
    "referral-wound-care": ("wound care team",),
    "referral-hospice": ("hospice",),
    "referral-social-worker": ("social worker",),
    "referral-psycho-oncology": ("psycho-oncology", "mental health professional", "antidepressant"),
    "referral-chaplaincy": ("chaplain",),
    "referral-clinical-nurse-specialist": ("clinical nurse specialist",),
    "referral-dietitian": ("dietitian",),
    "referral-lymphoedema-service": ("lymphoedema service",),
    "referral-surgical-assessment-bowel-obstruction": ("surgical assessment",),
    "referral-physiotherapy": ("physiotherap",),
    "referral-occupational-therapy": ("occupational therap",),
}
# Template values that carry the patient's own record (drug names, treatments on record, sites): facts, not advice.
FACT_KEYS = ("analgesics", "opioids", "anticonvulsants", "corticosteroids", "brain_treatments", "acp_items",
             "sites", "complications", "phase_evidence", "unreadable", "skin_findings")


@lru_cache(maxsize=1)
def _knowledge() -> Knowledge:
    return load_knowledge()


@cache
def _engine(level: str) -> Engine:
    return Engine(_knowledge(), EngineOptions(resource_level=level))


def _withheld_words(level: str) -> dict[str, tuple[str, ...]]:
    """Words of every ActivityDefinition that the level offers on no card at all."""
    offered: dict[str, bool] = {}
    for rule in _knowledge().rules:
        for s in rule.suggestions:
            aid = str(s.activity["id"])
            offered[aid] = offered.get(aid, False) or s.offered_at(level)
    return {aid: WORDS[aid] for aid, ok in offered.items() if not ok and aid in WORDS}


def _advice_text(card: dict, values: TemplateValues) -> str:
    """Summary and detail without the evidence ('Why'), the source line and the patient's own facts."""
    detail = card["detail"]
    detail = re.sub(r"\*\*Why\*\*\n(?:- .*\n?)*", "", detail)
    detail = re.sub(r"\*\*Draft withheld\*\*\n(?:- .*\n?)*", "", detail)
    detail = detail.split("\n**Source:**")[0]
    text = card["summary"] + "\n" + detail
    for key in FACT_KEYS:
        value = values[key]
        if value:
            text = text.replace(value, "")
    return text


@cache
def _evaluation(path: Path):  # type: ignore[no-untyped-def]
    s = orjson.loads(path.read_bytes())
    resources = [e["resource"] for e in s["bundle"]["entry"]]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    evaluator = build_evaluator(Settings(require_jwt=False), terminology=get_terminology(), knowledge=_knowledge())
    return evaluator.evaluate(resources, pid, now).evaluation


def test_every_activity_with_advice_words_is_known() -> None:
    activities = {str(a["id"]) for a in _knowledge().artifacts.of("ActivityDefinition")}
    assert set(WORDS) <= activities
    # every withholdable referral / procedure / imaging suggestion has words to look for
    for aid in activities:
        if aid.startswith(("referral-", "imaging-mri", "procedure-", "oxygen")) and aid != "referral-oncology-urgent":
            assert aid in WORDS, aid


def test_words_are_withheld_below_their_level() -> None:
    assert "imaging-mri-whole-spine" in _withheld_words("basic")
    assert "referral-pain-specialist" in _withheld_words("limited")
    assert "referral-stereotactic-radiotherapy" in _withheld_words("limited")
    assert _withheld_words("maximal") == {}


@pytest.mark.parametrize("level", RESOURCE_LEVELS)
def test_every_rule_at_every_level_names_only_what_the_level_offers(level: str) -> None:
    engine = _engine(level)
    withheld = _withheld_words(level)
    checked = 0
    problems: set[str] = set()
    for path in SCENARIOS:
        ev = _evaluation(path)
        if ev is None or not ev.facts.in_scope:
            continue
        values = TemplateValues(ev, SERVICE_VOCABULARY.values)
        for rule in engine.rules:
            card = engine._card(rule, ev, [], values, "level-true").card
            text = _advice_text(card, values).lower()
            for aid, words in withheld.items():
                for word in words:
                    # a word start: "persistent" does not name a stent
                    if re.search(r"\b" + re.escape(word.lower()), text):
                        problems.add(f"{rule.id} at {level} names {word!r} ({aid} is withheld)")
            for sugg in card.get("suggestions") or []:
                assert sugg["label"]
            checked += 1
    assert not problems, sorted(problems)
    assert checked >= len(engine.rules) * 20


def test_basic_level_texts_from_the_review() -> None:
    """The review's examples: no MRI, IV bisphosphonate, pain specialist or drain at basic."""
    withheld = {w.lower() for words in _withheld_words("basic").values() for w in words}
    assert {"mri", "iv bisphosphonate", "pain specialist", "drain", "thoracentesis", "stereotactic"} <= withheld
