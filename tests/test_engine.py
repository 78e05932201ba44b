"""The engine and its knowledge: start-up validation, drafts, ranking, cap, resource levels, generated docs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.engine.knowledge import INDICATOR_RANK
from app.engine.predicates import KnowledgeError
from app.service.factory import build_evaluator
from app.service.knowledge import load_knowledge
from app.settings import Settings
from plandefinitions.loader import Artifacts, load_artifacts
from terminology import get_terminology

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))


def _resources(s: dict) -> list[dict]:
    """A scenario holds one patient's record as a FHIR Bundle."""
    return [e["resource"] for e in s["bundle"]["entry"]]


def _run(path: Path, **settings: object) -> list[dict]:
    s = orjson.loads(path.read_bytes())
    level = settings.pop("resource_level", s.get("resource_level", "enhanced"))
    evaluator = build_evaluator(Settings(require_jwt=False, resource_level=level, **settings),  # type: ignore[arg-type]
                                terminology=get_terminology())
    pid = next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")
    return evaluator.evaluate(_resources(s), pid, datetime.fromisoformat(s["now"].replace("Z", "+00:00"))).cards


def _artifacts_with(change) -> Artifacts:  # type: ignore[no-untyped-def]
    original = load_artifacts()
    copied = Artifacts(by_type=copy.deepcopy(original.by_type))
    change(copied)
    return copied


def test_every_artifact_is_valid_fhir_and_every_rule_compiles() -> None:
    knowledge = load_knowledge()
    rule_ids = {r.id for r in knowledge.rules}
    rules_file = (Path(__file__).parents[2] / "shared" / "clinical-rules.md")
    if rules_file.exists():
        import re

        ids = set(re.findall(r"^\| `([a-z0-9-]+)`", rules_file.read_text(), flags=re.M))
        assert ids == rule_ids
    assert len(knowledge.rules) == len(rule_ids) == 37
    for rule in knowledge.rules:
        assert rule.citations, rule.id


def test_unknown_predicate_fails_at_start_up() -> None:
    def break_it(a: Artifacts) -> None:
        plan = next(iter(a.by_type["PlanDefinition"].values()))
        plan["action"][0]["condition"] = [{"kind": "applicability", "expression": {
            "language": "text/x-mbc-cds-predicate", "expression": "HasSpaceship"}}]
    with pytest.raises(KnowledgeError, match="unknown predicate"):
        load_knowledge(_artifacts_with(break_it))


def test_bad_predicate_argument_and_template_key_fail_at_start_up() -> None:
    def bad_arg(a: Artifacts) -> None:
        plan = next(iter(a.by_type["PlanDefinition"].values()))
        plan["action"][0]["condition"] = [{"kind": "applicability", "expression": {
            "language": "text/x-mbc-cds-predicate", "expression": "HasSite(moon)"}}]
    with pytest.raises(KnowledgeError):
        load_knowledge(_artifacts_with(bad_arg))

    def bad_key(a: Artifacts) -> None:
        plan = next(iter(a.by_type["PlanDefinition"].values()))
        plan["action"][0]["title"] = "Patient {name} needs care"
    with pytest.raises(KnowledgeError, match="template key"):
        load_knowledge(_artifacts_with(bad_key))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_suggestion_is_a_valid_draft_for_the_patient(path: Path) -> None:
    s = orjson.loads(path.read_bytes())
    pid = next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")
    for card in _run(path):
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                assert resource["status"] == "draft" and resource["intent"] == "proposal"
                subject = resource.get("subject") or resource.get("for")
                assert subject == {"reference": f"Patient/{pid}"}
                reasons = resource.get("reasonReference")
                assert reasons, f"{card['source']['topic']['code']}: no reasonReference"
                if resource["resourceType"] == "MedicationRequest":
                    assert "dosageInstruction" not in resource


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_cards_are_ranked_and_one_per_rule(path: Path) -> None:
    cards = _run(path)
    ranks = [INDICATOR_RANK[c["indicator"]] for c in cards]
    assert ranks == sorted(ranks)
    codes = [c["source"]["topic"]["code"] for c in cards]
    assert len(codes) == len(set(codes))


def test_info_cap_drops_from_the_end() -> None:
    path = next(p for p in SCENARIOS if p.stem.startswith("02-"))
    full = _run(path)
    infos = [c for c in full if c["indicator"] == "info"]
    assert len(infos) >= 3
    capped = _run(path, info_card_cap=2)
    capped_infos = [c["source"]["topic"]["code"] for c in capped if c["indicator"] == "info"]
    assert capped_infos == [c["source"]["topic"]["code"] for c in infos][: len(capped_infos)]
    assert len(capped_infos) <= 2 or capped_infos[0] == "mbc-overview" and len(capped_infos) <= 3


def test_resource_level_filters_cards_and_suggestions() -> None:
    path = next(p for p in SCENARIOS if p.stem.startswith("01-"))
    by_level = {level: {c["source"]["topic"]["code"]: c
                        for c in _run(path, resource_level=level, info_card_cap=99, card_budget=99)}
                for level in ("basic", "limited", "enhanced", "maximal")}
    assert "bone-modifying-agent" not in by_level["basic"]
    assert "bone-modifying-agent" in by_level["enhanced"] and "bone-modifying-agent" in by_level["maximal"]
    assert set(by_level["basic"]) <= set(by_level["limited"]) <= set(by_level["enhanced"]) <= set(by_level["maximal"])
    palliative = by_level["basic"]["referral-palliative-care"]
    assert "suggestions" not in palliative
    assert "palliative care available locally" in palliative["summary"]
    assert "specialist" not in palliative["summary"] + palliative["detail"]
    assert "suggestions" in by_level["enhanced"]["referral-palliative-care"]


def test_rules_doc_is_generated_from_the_plandefinitions() -> None:
    from plandefinitions.docs import render

    doc = Path(__file__).parents[1] / "docs" / "rules.md"
    assert doc.read_text(encoding="utf-8") == render(), "run: python -m plandefinitions.docs"


def test_unreadable_observations_give_no_missing_data_prompts_and_no_treatment() -> None:
    from cds_hooks.fallback import FetchProblem

    path = next(p for p in SCENARIOS if p.stem.startswith("19-"))  # pain 4 on paracetamol
    s = orjson.loads(path.read_bytes())
    pid = next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")
    now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    evaluator = build_evaluator(Settings(require_jwt=False), terminology=get_terminology())
    no_obs = [r for r in _resources(s) if r["resourceType"] != "Observation"]
    problems = [FetchProblem("observations", "timeout"), FetchProblem("medicationRequests", "http", 500)]
    codes = [c["source"]["topic"]["code"] for c in evaluator.evaluate(no_obs, pid, now, problems).cards]
    assert "data-incomplete" in codes
    for silent in ("assessment-due", "pain-ladder-step-up",
                   "bone-modifying-agent", "opioid-laxative"):
        assert silent not in codes


def test_stable_uuid_is_keyed_stable_and_a_valid_uuid() -> None:
    import uuid

    from app.engine.engine import _stable_uuid

    for parts in (("hook-1", "patient", "mbc-overview"), ("", "x"), ("ü", "é", "rule")):
        value = _stable_uuid(b"secret-a", *parts)
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 8 and parsed.variant == uuid.RFC_4122
        assert _stable_uuid(b"secret-a", *parts) == value  # stable: feedback finds its card
        assert _stable_uuid(b"secret-b", *parts) != value  # keyed: another deployment, another uuid
    # Parts are length-prefixed: no id can shift a boundary and collide with another split.
    assert _stable_uuid(b"k", "a|b", "c") != _stable_uuid(b"k", "a", "b|c")
    assert _stable_uuid(b"k", "a\x1fb", "c") != _stable_uuid(b"k", "a", "b\x1fc")


def test_snoozes_silence_non_critical_cards_and_are_named_on_the_overview() -> None:
    from datetime import timedelta

    from app.engine.engine import Snooze

    def fire(prefix: str, snoozes: list[Snooze]) -> list[dict]:
        path = next(p for p in SCENARIOS if p.stem.startswith(prefix))
        s = orjson.loads(path.read_bytes())
        evaluator = build_evaluator(Settings(require_jwt=False), terminology=get_terminology())
        pid = next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")
        now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
        return evaluator.evaluate(_resources(s), pid, now, snoozes=snoozes).cards

    until = datetime(2027, 1, 1, tzinfo=UTC)
    snooze = [Snooze("emergency-hypercalcaemia", "already-addressed", until)]
    mild = fire("06-", snooze)       # 2.7 mmol/L: a warning, snoozed
    assert "emergency-hypercalcaemia" not in [c["source"]["topic"]["code"] for c in mild]
    overview = next(c for c in mild if c["source"]["topic"]["code"] == "mbc-overview")
    assert "snoozed until 2027-01-01 (already addressed)" in overview["detail"]
    severe = fire("26-", snooze)     # 3.3 mmol/L: critical, never snoozed
    card = next(c for c in severe if c["source"]["topic"]["code"] == "emergency-hypercalcaemia")
    assert card["indicator"] == "critical"
    expired = fire("06-", [Snooze("emergency-hypercalcaemia", "already-addressed", until - timedelta(days=400))])
    assert "emergency-hypercalcaemia" in [c["source"]["topic"]["code"] for c in expired]


def test_window_lengths_in_card_text_come_from_the_settings() -> None:
    """With 21 / 60-day windows no card speaks of "30 days" or "90 days" (the fixed 90-day cord-compression
    history window of the rules excepted), and the configured lengths appear."""
    import re

    evaluator = build_evaluator(Settings(require_jwt=False, acute_window_days=21, assessment_window_days=60,
                                         info_card_cap=99, card_budget=99), terminology=get_terminology())
    seen: set[str] = set()
    for path in SCENARIOS:
        s = orjson.loads(path.read_bytes())
        pid = next(r["id"] for r in _resources(s) if r["resourceType"] == "Patient")
        now = datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
        for card in evaluator.evaluate(_resources(s), pid, now).cards:
            text = card["summary"] + "\n" + card["detail"].split("**Source:**")[0]
            text = re.sub(r"over 90 days ago, no new sign: history", "", text)
            assert not re.search(r"\b(30|90) days\b", text), (path.stem, card["source"]["topic"]["code"])
            seen |= set(re.findall(r"\b(21|60) days\b", text))
    assert seen == {"21", "60"}


def test_the_engine_knows_only_the_vocabulary_it_is_handed() -> None:
    """Without the order-time names (app.orders) the order-time PlanDefinition is refused at start-up, naming
    where: nothing registers itself into the engine behind the caller's back."""
    from app.clinical.card_frame import CARD_FRAME
    from app.clinical.card_values import CARD_VALUES
    from app.clinical.predicates import PREDICATES, PRIORITIES
    from app.engine.vocabulary import Vocabulary
    from app.orders.predicates import ORDER_CARD_VALUES
    from app.read_gaps import READ_GAP_VALUES

    clinical_only = Vocabulary(PREDICATES, PRIORITIES, {**CARD_VALUES, **ORDER_CARD_VALUES, **READ_GAP_VALUES},
                               CARD_FRAME)
    with pytest.raises(KnowledgeError, match=r"PlanDefinition/order-time .*unknown predicate"):
        load_knowledge(vocabulary=clinical_only)


def test_a_vocabulary_refuses_a_name_twice_and_keeps_its_own_copy() -> None:
    from app.clinical.predicates import PREDICATES
    from app.clinical.predicates.base import Named
    from app.service.knowledge import SERVICE_VOCABULARY

    with pytest.raises(KnowledgeError, match="defined twice.*IsAcutePhase"):
        SERVICE_VOCABULARY.extended(predicates={"IsAcutePhase": PREDICATES["Always"]})
    with pytest.raises(KnowledgeError, match="template keys defined twice"):
        SERVICE_VOCABULARY.extended(values={"sites": lambda ev: ""})
    table = {"Seen": Named(PREDICATES["Always"].fn)}
    vocabulary = SERVICE_VOCABULARY.extended(predicates=table)
    table["Later"] = PREDICATES["Always"]
    assert "Seen" in vocabulary.predicates and "Later" not in vocabulary.predicates
    assert "Seen" not in SERVICE_VOCABULARY.predicates


def test_the_predicates_library_documents_exactly_the_service_vocabulary() -> None:
    """Library-mbc-cds-predicates is what a knowledge author reads: every predicate and priority the shipped
    PlanDefinitions may name has its line there, and it lists nothing the service lacks."""
    import re

    from app.service.knowledge import SERVICE_VOCABULARY

    text = load_artifacts().of("Library")
    library = next(lib for lib in text if lib["id"] == "mbc-cds-predicates")["description"]
    listed = set(re.findall(r"^- `([A-Za-z0-9]+)", library, flags=re.M)) | set(
        re.findall(r"`([A-Z][A-Za-z0-9]+Priority)`", library))
    assert listed == {*SERVICE_VOCABULARY.predicates, *SERVICE_VOCABULARY.priorities}


def test_the_reference_lists_exactly_the_service_vocabulary() -> None:
    """docs/reference.md names every predicate, dynamic value and template key the knowledge may use, and no
    other: a name added to (or dropped from) a table shows up here until the reference says so."""
    import re

    from app.clinical.card_values import CARD_VALUES
    from app.clinical.predicates import PREDICATES, PRIORITIES
    from app.orders.predicates import ORDER_CARD_VALUES, ORDER_PREDICATES, ORDER_PRIORITIES
    from app.read_gaps import READ_GAP_VALUES

    text = (Path(__file__).parents[1] / "docs" / "reference.md").read_text(encoding="utf-8")
    table = text.split("### Predicates", 1)[1].split("Dynamic values", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    assert {m for row in rows for m in re.findall(r"`([A-Z][A-Za-z0-9]*)", row)} == set(PREDICATES)
    dynamic = text.split("Dynamic values (", 1)[1].split("###", 1)[0]
    assert set(re.findall(r"`([A-Z][A-Za-z0-9]*Priority)`", dynamic)) == set(PRIORITIES)
    keys = text.split("### Template keys", 1)[1].split("###", 1)[0].split("\n", 1)[1]
    assert set(re.findall(r"`([a-z_0-9]+)`", keys)) == {*CARD_VALUES, *READ_GAP_VALUES}
    order = text.split("### Order-time names", 1)[1].split("\n", 1)[1]
    order_predicates = order.split("dynamic values", 1)[0]
    assert {n for n in re.findall(r"`([A-Z][A-Za-z0-9]*)", order_predicates)} == set(ORDER_PREDICATES)
    assert set(re.findall(r"`([A-Z][A-Za-z0-9]*Priority)`", order)) == set(ORDER_PRIORITIES)
    order_keys = order.split("template keys", 1)[1].split("(filled", 1)[0]
    assert set(re.findall(r"`([a-z_0-9]+)`", order_keys)) == set(ORDER_CARD_VALUES)
