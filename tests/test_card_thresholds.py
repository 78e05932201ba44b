"""Card text names clinical cut-offs and windows through template keys (app.clinical.card_values), never as
numbers: what a card says follows app/clinical/thresholds.py and the configured windows."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from app.clinical import thresholds as T
from app.clinical.card_values import THRESHOLD_VALUES
from app.clinical.evaluation import Evaluation
from app.engine.knowledge import text_at_level
from app.engine.predicates import KnowledgeError
from app.service.factory import build_evaluator
from app.service.knowledge import load_knowledge
from app.settings import RESOURCE_LEVELS, Settings
from plandefinitions.loader import Artifacts, load_artifacts
from terminology import get_terminology

SCENARIOS = Path(__file__).parent / "scenarios"
_KEY = re.compile(r"\{[a-z0-9_]+\}")
# Numbers in rule text that are no cut-off the service applies: scales, measure and instrument names, the
# ladder's steps, guideline advice and citations, "1 fraction" (a single fraction).
_NOT_CUT_OFFS = re.compile(
    r"\b0-10\b|\bSpO2\b|\bPHQ-[29]\b|\bGAD-7\b|\b[Ss]tep [0-3]\b|\b5-6 times a day\b|\bover 55\b|\bCG81 \d+(\.\d+)*"
    r"|\bin 1 fraction\b")


def _rule_texts() -> list[tuple[str, str]]:
    """Every template the cards are rendered from: titles (and their level variants), descriptions at every
    level, and each suggestion's label, description and drafted Task description."""
    out: list[tuple[str, str]] = []
    for rule in load_knowledge().rules:
        out.append((rule.id, rule.title))
        out += [(f"{rule.id} title from {level}", title) for level, title in rule.level_titles]
        out += [(rule.id, text_at_level(rule.description, level)) for level in RESOURCE_LEVELS]
        for s in rule.suggestions:
            out += [(f"{rule.id}/{s.id}", text) for text in (s.label, s.description, s.task_description)]
    return out


def test_rule_text_writes_no_cut_off_or_window_as_a_number() -> None:
    """A number in the text a card is rendered from would not follow thresholds.py or the window settings:
    each one is a template key ({spo2_low}, {acute_window}, ...)."""
    offending = []
    for where, text in _rule_texts():
        bare = _NOT_CUT_OFFS.sub("", _KEY.sub("", text))
        if re.search(r"\d", bare):
            offending.append((where, [line for line in bare.splitlines() if re.search(r"\d", line)]))
    assert offending == []


@pytest.mark.parametrize(("phrase", "key"), [
    (r"eGFR below 30\b", "renal_severe_below"), (r"SpO2 below 90\b", "spo2_low"),
    (r"\b3\.0 mmol/L|\b12 mg/dL|\b2\.6-3\.0\b", "hypercalcaemia_severe_mmol"), (r"PHQ-2 \(3\b", "phq2_positive"),
    (r"ECOG 0-2\b", "ecog_good"), (r"ECOG 3-4\b", "ecog_poor"), (r"\b8 Gy\b", "single_fraction_dose"),
    (r"\b(30|90)[- ]days?\b", "acute_window"),
])
def test_the_known_cut_offs_are_written_as_their_keys(phrase: str, key: str) -> None:
    """The cut-offs a review found written out, one by one: none is left, and its key is used somewhere."""
    texts = [text for _, text in _rule_texts()]
    assert not [t for t in texts if re.search(phrase, t)], phrase
    assert any(f"{{{key}}}" in t for t in texts), key


def test_threshold_keys_render_the_values_of_thresholds_py() -> None:
    no_patient = cast(Evaluation, None)   # a cut-off reads no patient
    rendered = {key: value(no_patient) for key, value in THRESHOLD_VALUES.items()}
    assert rendered == {
        "spo2_low": f"{T.SPO2_LOW:g}", "renal_severe_below": f"{T.RENAL_SEVERE_BELOW:g}",
        "hypercalcaemia_mmol": "2.6", "hypercalcaemia_severe_mmol": "3.0", "hypercalcaemia_severe_mgdl": "12",
        "phq2_positive": f"{T.PHQ2:g}", "ecog_good": f"0-{T.ECOG_GOOD_MAX:g}",
        "ecog_poor": f"{T.ECOG_POOR_MIN:g}-{T.ECOG_POOR_MAX:g}", "single_fraction_dose": "8 Gy",
    }
    assert T.HYPERCALCAEMIA["mmol/L"] == 2.6 and T.HYPERCALCAEMIA_SEVERE == {"mmol/L": 3.0, "mg/dL": 12.0}


def test_the_single_fraction_the_order_card_drafts_is_the_dose_its_text_names() -> None:
    activity = load_artifacts().get("ActivityDefinition", "radiotherapy-bone-single-fraction")
    assert activity is not None
    values = {dv["path"]: dv["expression"]["expression"] for dv in activity["dynamicValue"]}
    assert values["fractionDose"] == f"{T.BONE_PAIN_SINGLE_FRACTION_GY * 100:g} 'cGy'"
    assert values["fractions"] == "1"


def _scenario(name: str) -> tuple[list[dict[str, Any]], str, datetime]:
    path = next(SCENARIOS.glob(f"{name}*.json"))
    s = orjson.loads(path.read_bytes())
    resources = [e["resource"] for e in s["bundle"]["entry"]]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return resources, pid, datetime.fromisoformat(s["now"].replace("Z", "+00:00"))


def _suggestion_texts(cards: list[dict[str, Any]]) -> list[str]:
    out = []
    for card in cards:
        for s in card.get("suggestions") or []:
            out.append(s["label"])
            for action in s["actions"]:
                out.append(action["description"])
                out.append(str((action.get("resource") or {}).get("description") or ""))
    return out


def _evaluate(resources: list[dict[str, Any]], pid: str, now: datetime, *, acute: int, assessment: int,
              level: str = "enhanced") -> list[dict[str, Any]]:
    evaluator = build_evaluator(Settings(require_jwt=False, resource_level=level, acute_window_days=acute,
                                         assessment_window_days=assessment, info_card_cap=99, card_budget=99),
                                terminology=get_terminology())
    return evaluator.evaluate(resources, pid, now).cards


def _with_low_spo2(resources: list[dict[str, Any]], pid: str, now: datetime) -> list[dict[str, Any]]:
    spo2 = {"resourceType": "Observation", "id": f"{pid}-spo2", "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
            "effectiveDateTime": (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "valueQuantity": {"value": 86, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    return [*copy.deepcopy(resources), spo2]


@pytest.mark.parametrize(("acute", "assessment"), [(30, 90), (21, 60)])
def test_suggestion_text_follows_the_configured_windows(acute: int, assessment: int) -> None:
    """The oxygen suggestion names the acute window, the reassessment Task the assessment window, as set."""
    resources, pid, now = _scenario("36-")
    lung = _suggestion_texts(_evaluate(_with_low_spo2(resources, pid, now), pid, now, acute=acute,
                                       assessment=assessment, level="limited"))
    assert f"SpO2 below {T.SPO2_LOW:g} % in the last {acute} days." in lung

    resources, pid, now = _scenario("126-")
    texts = _suggestion_texts(_evaluate(resources, pid, now, acute=acute, assessment=assessment))
    reassess = [t for t in texts if "record the assessments that are missing" in t]
    assert reassess and all(f"missing in the {assessment}-day window" in t for t in reassess)


def test_no_suggestion_speaks_of_the_default_windows_when_they_are_changed() -> None:
    for path in sorted(SCENARIOS.glob("*.json")):
        resources, pid, now = _scenario(path.stem)
        for text in _suggestion_texts(_evaluate(resources, pid, now, acute=21, assessment=60, level="maximal")):
            assert not re.search(r"\b(30|90)[- ]days?\b", text), (path.stem, text)


def _artifacts_with_suggestion_title(title: str) -> Artifacts:
    artifacts = copy.deepcopy(load_artifacts())
    plan = artifacts.get("PlanDefinition", "site-specific")
    assert plan is not None
    lung = next(a for a in plan["action"] if a["id"] == "lung-breathlessness")
    lung["action"][0]["title"] = title
    return artifacts


def test_suggestion_templates_are_checked_at_start_up() -> None:
    with pytest.raises(KnowledgeError, match=r"lung-breathlessness suggestion .*unknown template key \{nope\}"):
        load_knowledge(_artifacts_with_suggestion_title("Oxygen below {nope}"))
    assert load_knowledge(_artifacts_with_suggestion_title("Oxygen below {spo2_low} %")).rules
