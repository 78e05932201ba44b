"""A worked example of adding a rule without changing app/engine (docs/design.md, "A new rule" quotes this file).

Teaching example, not shipped: nausea with brain metastases and no antiemetic on record. Seed 000 (brain
metastasis) treats nausea and vomiting with antiemetics and steroids, and BHGI 2013 Table 2 lists antiemetics for
brain metastases at the basic level. The shipped brain-metastases card says as much in its text; this rule adds a
card of its own with an antiemetic draft, to show every step: a PlanDefinition action and its code in the rule
CodeSystem (here on copies of the shipped artifacts), one clinical function under a new predicate name, and that
name in the vocabulary the knowledge is compiled over. Every code it reads is an existing one (ValueSets nausea,
metastasis-brain, drug-antiemetic; ActivityDefinition medication-metoclopramide).
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import NO_CONDITION, Findings, Named, latest_date
from app.engine.engine import FiredRule
from app.engine.knowledge import Knowledge
from app.engine.predicates import KnowledgeError
from app.engine.vocabulary import Vocabulary
from app.service.factory import build_evaluator
from app.service.knowledge import SERVICE_VOCABULARY, load_knowledge
from app.settings import Settings
from plandefinitions.loader import RULE_SYSTEM, Artifacts, load_artifacts
from terminology import get_terminology

RULE_ID = "brain-nausea-antiemetic"


# Step 1: the clinical function. In the service it would live in app/clinical/predicates/symptoms.py.
def nausea_recent(ev: Evaluation, _: str | None) -> Findings:
    """Nausea or vomiting recorded within the acute window; the evidence names the Conditions it rests on."""
    fact = ev.facts.complications.get("nausea")
    when = latest_date(fact)
    if fact is None or not ev.facts.recent(when, ev.facts.acute_window):
        return None
    return [Evidence(f"nausea / vomiting recorded {fmt_date(when)}", tuple(fact.refs))]


# Step 2: its name in the vocabulary. In the service: one line in PREDICATES (app/clinical/predicates/__init__.py)
# and one in plandefinitions/Library-mbc-cds-predicates.json. "not NauseaRecent" would rest on the Conditions.
VOCABULARY: Vocabulary = SERVICE_VOCABULARY.extended(
    predicates={"NauseaRecent": Named(nausea_recent, negation=NO_CONDITION)})


def _condition(expression: str) -> dict[str, Any]:
    return {"kind": "applicability", "expression": {"language": "text/x-mbc-cds-predicate", "expression": expression}}


# Step 3: the PlanDefinition action (here appended to PlanDefinition-site-specific).
ACTION: dict[str, Any] = {
    "id": RULE_ID,
    "extension": [
        {"url": "http://mbc-cds.example.org/fhir/StructureDefinition/resource-level", "valueCode": "basic"},
        {"url": "http://mbc-cds.example.org/fhir/StructureDefinition/display-rank", "valueInteger": 85},
    ],
    "title": "Nausea with brain metastases: no antiemetic on record",
    "description": "**What to do**\n- Brain symptoms on record: {brain_symptoms}.\n- Treat the nausea with an "
                   "antiemetic; a corticosteroid (dexamethasone) helps when cerebral oedema causes it.\n\n"
                   "**What not to do**\n- Do not use a prokinetic antiemetic if bowel obstruction is suspected.",
    "priority": "routine",
    "code": [{"coding": [{"system": RULE_SYSTEM, "code": RULE_ID,
                          "display": "Nausea with brain metastases and no antiemetic"}]}],
    "documentation": [
        {"type": "citation", "label": "BHGI 2013 brain metastasis",
         "display": "Palliative Care for Metastatic Breast Cancer (knowledge summary on the BHGI 2013 consensus), "
                    "site-specific metastases: brain metastasis"},
        {"type": "citation", "label": "BHGI 2013 Table 2",
         "display": "Palliative Care for Metastatic Breast Cancer (knowledge summary on the BHGI 2013 consensus), "
                    "Table 2: organ-based (site-specific) metastatic disease management by resource level"},
    ],
    "condition": [_condition("HasSite(brain)"), _condition("NauseaRecent"),
                  _condition("not OnDrugClass(antiemetic)")],
    "action": [{
        "id": "brain-nausea-metoclopramide",
        "title": "Metoclopramide for nausea (prescriber sets dose)",
        "description": "Antiemetic for nausea with brain metastases.",
        "condition": [_condition("not BowelObstruction"), _condition("not DataIncomplete")],
        "definitionCanonical": "http://mbc-cds.example.org/fhir/ActivityDefinition/medication-metoclopramide",
    }],
}

# Step 4: the rule's code in CodeSystem-mbc-cds-rules.
CONCEPT: dict[str, str] = {
    "code": RULE_ID, "display": "Nausea with brain metastases and no antiemetic",
    "definition": "Fires when a brain metastasis is on record with nausea or vomiting recorded in the acute window "
                  "and no active antiemetic.",
}


def artifacts_with_the_rule() -> Artifacts:
    """The shipped artifacts, copied, with the new action and its code (the shipped files stay as they are)."""
    artifacts = Artifacts(by_type=copy.deepcopy(load_artifacts().by_type))
    artifacts.by_type["PlanDefinition"]["site-specific"]["action"].append(copy.deepcopy(ACTION))
    rules = artifacts.by_type["CodeSystem"]["mbc-cds-rules"]
    rules["concept"].append(dict(CONCEPT))
    rules["count"] = len(rules["concept"])
    return artifacts


# Step 5: compile over the larger vocabulary and evaluate through the factory.
def knowledge_with_the_rule() -> Knowledge:
    return load_knowledge(artifacts_with_the_rule(), VOCABULARY)


NOW = datetime.fromisoformat("2026-11-20T10:00:00+00:00")
SCENARIO = Path(__file__).parent / "scenarios" / "10-brain-snomed-anticonvulsant-no-seizure.json"
NAUSEA: dict[str, Any] = {
    "resourceType": "Condition", "id": "p10-nausea",
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                   "code": "active"}]},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "422587007", "display": "Nausea"}]},
    "subject": {"reference": "Patient/p10"}, "onsetDateTime": "2026-11-15T09:00:00Z",
}


def _record(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenario 10 (brain metastasis, levetiracetam, no antiemetic) and `extra`."""
    bundle = orjson.loads(SCENARIO.read_bytes())["bundle"]
    return [e["resource"] for e in bundle["entry"]] + list(extra)


def _fired(knowledge: Knowledge, record: list[dict[str, Any]], *, capped: bool = True) -> dict[str, FiredRule]:
    caps = {} if capped else {"info_card_cap": 99, "card_budget": 99}
    settings = Settings(require_jwt=False, resource_level="basic", **caps)  # type: ignore[arg-type]
    evaluator = build_evaluator(settings, terminology=get_terminology(), knowledge=knowledge)
    outcome = evaluator.evaluate(record, "p10", NOW)
    return {f.rule.id: f for f in outcome.fired}


def test_the_example_is_not_shipped() -> None:
    assert RULE_ID not in {r.id for r in load_knowledge().rules}
    assert "NauseaRecent" not in SERVICE_VOCABULARY.predicates


def test_the_new_rule_fires_with_its_why_source_and_draft() -> None:
    fired = _fired(knowledge_with_the_rule(), _record(NAUSEA))
    assert RULE_ID in fired
    rule = fired[RULE_ID]
    card = rule.card
    assert card["summary"] == "Nausea with brain metastases: no antiemetic on record"
    assert card["indicator"] == "info"
    assert card["source"]["topic"] == {"system": RULE_SYSTEM, "code": RULE_ID,
                                       "display": "Nausea with brain metastases and no antiemetic"}
    assert card["source"]["label"] == "mbc-cds: BHGI 2013 brain metastasis"
    # Why: each condition's evidence in order, the new predicate's with the Condition it rests on.
    assert rule.evidence[:2] == (Evidence("brain metastasis (first recorded 2026-06-23)", ("Condition/p10-c2",)),
                                 Evidence("nausea / vomiting recorded 2026-11-15", ("Condition/p10-nausea",)))
    assert "- nausea / vomiting recorded 2026-11-15 (Condition/p10-nausea)" in card["detail"]
    assert "**Source:** BHGI 2013 brain metastasis" in card["detail"]
    assert "Brain symptoms on record: " in card["detail"] and "{brain_symptoms}" not in card["detail"]
    [suggestion] = card["suggestions"]
    assert suggestion["label"] == "Metoclopramide for nausea (prescriber sets dose)"
    [action] = suggestion["actions"]
    draft = action["resource"]
    assert draft["resourceType"] == "MedicationRequest" and draft["status"] == "draft"
    assert draft["subject"] == {"reference": "Patient/p10"}
    # The shipped rules fire as before. (One more card can push the lowest-ranked info cards past the info cap and
    # the card budget, as any new rule can; the overview names them. Compared here without the caps.)
    assert set(_fired(knowledge_with_the_rule(), _record(NAUSEA), capped=False)) - {RULE_ID} == \
        set(_fired(load_knowledge(), _record(NAUSEA), capped=False))


def test_the_new_rule_is_quiet_without_recent_nausea_or_with_an_antiemetic() -> None:
    knowledge = knowledge_with_the_rule()
    assert RULE_ID not in _fired(knowledge, _record())
    old = {**NAUSEA, "onsetDateTime": "2026-09-01T09:00:00Z"}
    assert RULE_ID not in _fired(knowledge, _record(old))
    antiemetic = {"resourceType": "MedicationRequest", "id": "p10-ondansetron", "status": "active",
                  "intent": "order", "medicationCodeableConcept": {"text": "Ondansetron 4 mg oral tablet"},
                  "subject": {"reference": "Patient/p10"}, "authoredOn": "2026-11-16T10:00:00Z"}
    with_antiemetic = _fired(knowledge, _record(NAUSEA, antiemetic))
    # Quiet because ondansetron is an antiemetic, not because an unclassified drug withholds "not OnDrugClass".
    assert RULE_ID not in with_antiemetic and "data-incomplete" not in with_antiemetic


def test_without_the_predicate_start_up_refuses_the_rule() -> None:
    with pytest.raises(KnowledgeError, match=f"action {RULE_ID}: .*unknown predicate 'NauseaRecent'"):
        load_knowledge(artifacts_with_the_rule(), SERVICE_VOCABULARY)


def test_design_md_quotes_this_example() -> None:
    """docs/design.md ("A new rule") shows the function, the vocabulary line, the action and the start-up refusal
    of this file: the doc and the code that runs cannot drift apart."""
    import inspect
    import json
    import re
    import sys
    import textwrap

    doc = (Path(__file__).parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    section = doc.split("### A new rule", 1)[1].split("\n### ", 1)[0]
    blocks = [(lang, textwrap.dedent(body)) for lang, body in re.findall(r"```(\w+)\n(.*?)\n\s*```", section, re.S)]
    python = [body for lang, body in blocks if lang == "python"]
    assert python[0].strip() == inspect.getsource(nausea_recent).strip()
    source = inspect.getsource(sys.modules[__name__])
    assert python[1].strip() in source
    [action] = [json.loads(body) for lang, body in blocks if lang == "json"]
    assert action == ACTION
    with pytest.raises(KnowledgeError) as refused:
        load_knowledge(artifacts_with_the_rule(), SERVICE_VOCABULARY)
    quoted = re.search(r"the example is refused: `(.*?)`", section, re.S)
    assert quoted is not None and " ".join(quoted.group(1).split()) == str(refused.value)
