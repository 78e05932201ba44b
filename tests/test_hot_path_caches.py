"""What the hot path remembers between hooks is what is the same for every patient: text scans of drug names and
procedure texts (terminology/loader.py), medication classifications (app/clinical/medications.py), the static
parts of each rule's card (app/engine/engine.py). Remembered answers equal fresh ones, callers cannot change
them, the caches are bounded, and site-local codes get their own classifications."""

from __future__ import annotations

import pytest

import app.clinical.medications as medications
import terminology.loader as loader
from app.clinical.medications import classify_medication
from app.engine.engine import Engine, EngineOptions
from app.service.knowledge import load_knowledge
from terminology import Terminology, get_terminology
from terminology.local_codes import LocalCode, with_local_codes

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def test_a_remembered_text_scan_equals_a_fresh_one_and_callers_cannot_change_it() -> None:
    t = get_terminology()
    fresh = Terminology()
    text = "MST Continus 10 mg tablets"
    first = t.concepts_of_text(text)
    assert first == fresh.concepts_of_text(text) and "drug-strong-opioid" in first
    first.add("drug-laxative")  # a caller's set is its own
    assert t.concepts_of_text(text) == fresh.concepts_of_text(text)
    ingredients = t.ingredients_of_text(text)
    ingredients.clear()
    assert t.ingredients_of_text(text) == fresh.ingredients_of_text(text) != set()
    assert t.recognises_medication_text(text) is True
    procedure = "Palliative radiotherapy to the thoracic spine"
    phrases = t.concepts_of_phrases(procedure)
    phrases.clear()
    assert t.concepts_of_phrases(procedure) == fresh.concepts_of_phrases(procedure) != set()


def test_the_text_scan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_TEXT_CACHE_SIZE", 8)
    t = Terminology()
    for i in range(50):
        t.concepts_of_text(f"morphine {i} mg")
    assert 0 < len(t._name_cache) <= 8
    long_text = "morphine " + "x" * (loader._TEXT_CACHE_LONGEST + 1)
    assert "drug-strong-opioid" in t.concepts_of_text(long_text)
    assert long_text not in t._name_cache  # scanned, not kept


def _request(coding: dict[str, str], rid: str) -> dict[str, object]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [coding]}}


def test_a_remembered_classification_is_the_fresh_one_for_another_patients_request() -> None:
    t = get_terminology()
    morphine = {"system": RXNORM, "code": "7052", "display": "morphine"}
    first = classify_medication(_request(morphine, "a"), t)
    medications._MEMO.clear()
    again = classify_medication(_request(morphine, "b"), t)
    assert first == again and first.classified and "strong-opioid" in first.classes
    assert classify_medication(_request(morphine, "c"), t) is again  # remembered


def test_site_local_codes_get_their_own_classifications() -> None:
    base = get_terminology()
    local = {"system": "http://hospital.example.org/drugs", "code": "MOR-10", "display": "house code"}
    assert classify_medication(_request(local, "a"), base).classified is False
    with_local = with_local_codes(base, [LocalCode("drug-strong-opioid", local["system"], local["code"], "")])
    assert "strong-opioid" in classify_medication(_request(local, "a"), with_local).classes
    assert classify_medication(_request(local, "a"), base).classified is False  # the shared one is untouched


def test_the_classification_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(medications, "_MEMO_SIZE", 8)
    t = Terminology()
    for i in range(50):
        classify_medication(_request({"system": RXNORM, "code": str(100000 + i)}, "x"), t)
    assert 0 < len(medications._MEMO[t]) <= 8


def test_static_card_parts_are_built_once_per_rule_at_the_level() -> None:
    knowledge = load_knowledge()
    basic = Engine(knowledge, EngineOptions(resource_level="basic", acp_app_url="https://acp.example.org/app"))
    enhanced = Engine(knowledge, EngineOptions(resource_level="enhanced"))
    for rule in knowledge.rules:
        assert basic._sources[rule.id]["topic"]["code"] == rule.id
        assert [s.id for s in basic._offered[rule.id]] == [s.id for s in rule.suggestions if s.offered_at("basic")]
        assert [s.id for s in enhanced._offered[rule.id]] == [
            s.id for s in rule.suggestions if s.offered_at("enhanced")]
        if rule.link == "acp-app":
            assert basic._links[rule.id][-1]["url"] == "https://acp.example.org/app"
            assert all(link["type"] == "absolute" for link in enhanced._links[rule.id])
