"""The card frame: clinical code decides what frames every card (scope, the overview, the lines around a "Why",
draft reasons and safety) and the engine lays out exactly what it is handed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from app.clinical.card_frame import ClinicalCardFrame
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.overview import Section, overview_sections
from app.service.evaluate import RecordEvaluator
from app.service.factory import build_evaluator
from app.service.knowledge import SERVICE_VOCABULARY, load_knowledge
from app.settings import Settings
from cds_hooks.fallback import FetchProblem
from terminology import get_terminology
from tests import order_cases as oc
from tests.conftest import NOW


class _Stub(ClinicalCardFrame):
    """The service's frame with invented overview and "Why" lines, and a scope decision set by the test."""

    def __init__(self, *, in_scope: bool = True, speaks: bool = False) -> None:
        self._in_scope, self._speaks = in_scope, speaks

    def in_scope(self, ev: Evaluation) -> bool:
        return self._in_scope

    def out_of_scope_evidence(self, ev: Evaluation) -> list[Evidence]:
        return [Evidence("frame: could not be read")] if self._speaks else []

    def overview(self, ev: Evaluation) -> list[Section]:
        return [Section("Frame first", "(text)", (Evidence("rests on", ("Condition/x",)), Evidence("rests on"))),
                Section("Frame second", None, (Evidence("line"),))]

    def subject(self, ev: Evaluation) -> Evidence:
        return Evidence("frame subject", ("Condition/y",))

    def status(self, ev: Evaluation) -> Evidence:
        return Evidence("frame status")

    def draft_reasons(self, ev: Evaluation, evidence: Sequence[Evidence]) -> list[str]:
        return ["Condition/frame-reason"]

    def draft_withheld(self, ev: Evaluation, resource: dict[str, Any]) -> list[Evidence]:
        return [Evidence(f"frame withholds {resource['resourceType']}")] \
            if resource["resourceType"] == "MedicationRequest" else []


def _evaluator(frame: ClinicalCardFrame) -> RecordEvaluator:
    knowledge = load_knowledge(vocabulary=dataclasses.replace(SERVICE_VOCABULARY, frame=frame))
    return build_evaluator(Settings(require_jwt=False), terminology=get_terminology(), knowledge=knowledge)


# A pain score of 7 with no analgesic: a card with a drug draft, next to the overview.
_PAIN = oc.patient(oc.observation("p1", "72514-3", 7, "{score}", days_ago=1))


def test_the_engine_lays_out_the_overview_sections_it_is_handed() -> None:
    outcome = _evaluator(_Stub()).evaluate(_PAIN, oc.PID, NOW, hook_instance="frame")
    overview = next(f for f in outcome.fired if f.rule.tier == "overview")
    detail = overview.card["detail"]
    assert detail.startswith("**Frame first** (text)\n- rests on (Condition/x)\n\n**Frame second**\n- line\n")
    assert "Phase:" not in detail.split("\n\n**Frame second**")[0]
    # What the card rests on is the first section, each line once.
    assert overview.evidence == (Evidence("rests on", ("Condition/x",)),)


def test_another_card_closes_its_why_with_the_frame_lines_and_drafts_through_it() -> None:
    outcome = _evaluator(_Stub()).evaluate(_PAIN, oc.PID, NOW, hook_instance="frame")
    others = [f for f in outcome.fired if f.rule.tier != "overview"]
    assert others
    for fired in others:
        why = fired.card["detail"].split("\n\n")[0].split("\n")
        assert why[0] == "**Why**" and why[-2:] == ["- frame subject (Condition/y)", "- frame status"]
        assert fired.evidence[-1] == Evidence("frame subject", ("Condition/y",))
    resources = [a["resource"] for f in others for s in f.card.get("suggestions") or [] for a in s["actions"]]
    assert resources and all(r["resourceType"] != "MedicationRequest" for r in resources)
    assert all(ref["reference"] == "Condition/frame-reason"
               for r in resources for ref in (r.get("reasonReference") or []) if isinstance(ref, dict))
    assert any("**Draft withheld**\n- frame withholds MedicationRequest" in f.card["detail"] for f in others)


def test_scope_is_the_frames_decision() -> None:
    problems = [FetchProblem(key="conditions", kind="http", status=500)]
    assert _evaluator(_Stub(in_scope=False)).evaluate(_PAIN, oc.PID, NOW, problems=problems).cards == []
    spoken = _evaluator(_Stub(in_scope=False, speaks=True)).evaluate(_PAIN, oc.PID, NOW, problems=problems)
    assert [f.rule.tier for f in spoken.fired] == ["uncapped"]


def test_the_service_frame_decides_scope_from_the_record() -> None:
    frame = ClinicalCardFrame()
    evaluator = build_evaluator(Settings(require_jwt=False), terminology=get_terminology())
    problems = [FetchProblem(key="conditions", kind="http", status=500)]
    patient_only = [r for r in _PAIN if r["resourceType"] == "Patient"]
    # A record whose Conditions could not be read cannot rule scope out: the could-not-read card speaks.
    unread = evaluator.evaluate(patient_only, oc.PID, NOW, problems=problems).evaluation
    assert not frame.in_scope(unread) and frame.out_of_scope_evidence(unread)
    # Read in full and out of scope: silence.
    quiet = evaluator.evaluate(patient_only, oc.PID, NOW).evaluation
    assert not frame.in_scope(quiet) and not frame.out_of_scope_evidence(quiet)
    assert frame.in_scope(evaluator.evaluate(_PAIN, oc.PID, NOW).evaluation)


def test_the_overview_names_a_provisional_progression_pattern() -> None:
    """ECOG 3 within 30 days of the first metastasis reads as de novo poor condition; the overview says so last."""
    evaluator = build_evaluator(Settings(require_jwt=False), terminology=get_terminology())
    poor = oc.patient(oc.observation("e1", "89247-1", 3, "{score}", days_ago=85))
    outcome = evaluator.evaluate(poor, oc.PID, NOW, hook_instance="pattern")
    sections = overview_sections(outcome.evaluation)
    assert [s.title for s in sections][1:] == ["Metastatic sites:", "Progression pattern:"]
    assert sections[-1].text is not None and sections[-1].text.startswith("de novo poor condition (provisional")
    overview = next(f for f in outcome.fired if f.rule.tier == "overview")
    assert f"\n\n**Progression pattern:** {sections[-1].text}\n" in overview.card["detail"]
