"""Compile the PlanDefinitions once at start-up into rules the engine can apply in microseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Order-time predicates (section 5b) register themselves with the same predicate language.
import app.orders.predicates  # noqa: E402, F401, I001
from app.engine.context import check_template
from app.engine.predicates import (
    LANGUAGE,
    Condition,
    DynamicValue,
    KnowledgeError,
    compile_condition,
    compile_dynamic_value,
)
from app.settings import RESOURCE_LEVELS
from plandefinitions.loader import RESOURCE_LEVEL_URL, RULE_SYSTEM, Artifacts, load_artifacts, plan_hooks

PRIORITY_TO_INDICATOR = {"routine": "info", "urgent": "warning", "asap": "warning", "stat": "critical"}
INDICATOR_RANK = {"critical": 0, "warning": 1, "info": 2}

# Order within one indicator (clinical-rules.md, "Quiet by default"); the info cap drops from the end.
DISPLAY_ORDER: tuple[str, ...] = (
    "mbc-overview",
    "emergency-spinal-cord-compression", "emergency-hypercalcaemia", "emergency-bowel-obstruction",
    "bone-fracture-risk", "bone-pain-radiotherapy", "bone-modifying-agent", "brain-metastases",
    "anticonvulsant-without-seizure", "liver-metastases", "lung-breathlessness", "skin-wound-care", "lymphoedema",
    "pain-ladder-step-up", "pain-uncontrolled-specialist", "opioid-laxative", "pain-assessment-due",
    "referral-palliative-care",
    "acp-acute", "acp-stable", "acp-revisit",
    "referral-hospice", "referral-rehabilitation", "referral-social-work", "referral-nutrition", "distress-referral",
    "distress-screening-due",
    "stable-phase-wellbeing",
    "key-worker",
    "assessment-due", "data-incomplete",
)


@dataclass(frozen=True)
class Citation:
    label: str
    display: str
    url: str | None


@dataclass(frozen=True)
class SuggestionRule:
    id: str
    label: str
    description: str
    conditions: tuple[Condition, ...]
    level: str
    activity: dict[str, Any]
    action_type: str = "create"   # PlanDefinition action type: create | update | remove


@dataclass(frozen=True)
class Rule:
    id: str
    display: str
    group: str
    title: str
    description: str
    priority: str
    priority_fn: DynamicValue | None
    level: str
    citations: tuple[Citation, ...]
    conditions: tuple[Condition, ...]
    suggestions: tuple[SuggestionRule, ...]
    selection_behavior: str
    order: int
    note: str = ""
    hooks: tuple[str, ...] = ("patient-view",)   # the CDS hooks whose trigger events fire this rule


@dataclass
class Knowledge:
    rules: list[Rule]
    artifacts: Artifacts
    library_description: str = ""
    rule_ids: frozenset[str] = field(default_factory=frozenset)


def _level(element: dict[str, Any], default: str, where: str) -> str:
    for ext in element.get("extension") or []:
        if ext.get("url") == RESOURCE_LEVEL_URL:
            level = ext.get("valueCode")
            if level not in RESOURCE_LEVELS:
                raise KnowledgeError(f"{where}: unknown resource level {level!r}")
            return str(level)
    return default


def _conditions(action: dict[str, Any], where: str) -> tuple[Condition, ...]:
    out = []
    for cond in action.get("condition") or []:
        expr = cond.get("expression") or {}
        if cond.get("kind") != "applicability":
            continue
        if expr.get("language") != LANGUAGE:
            raise KnowledgeError(f"{where}: condition language must be {LANGUAGE}")
        out.append(compile_condition(str(expr.get("expression", ""))))
    return tuple(out)


def _rule_code(action: dict[str, Any], where: str) -> tuple[str, str]:
    for cc in action.get("code") or []:
        for coding in cc.get("coding") or []:
            if coding.get("system") == RULE_SYSTEM:
                return str(coding["code"]), str(coding.get("display") or coding["code"])
    raise KnowledgeError(f"{where}: action has no rule code in {RULE_SYSTEM}")


def _action_type(action: dict[str, Any]) -> str:
    for coding in (action.get("type") or {}).get("coding") or []:
        if coding.get("code") in ("create", "update", "remove"):
            return str(coding["code"])
    return "create"


def compile_knowledge(artifacts: Artifacts | None = None) -> Knowledge:
    artifacts = artifacts or load_artifacts()
    activities = {a.get("url"): a for a in artifacts.of("ActivityDefinition")}
    rules: list[Rule] = []
    order = {rid: i for i, rid in enumerate(DISPLAY_ORDER)}
    for plan in sorted(artifacts.of("PlanDefinition"), key=lambda p: p["id"]):
        for action in plan.get("action") or []:
            where = f"PlanDefinition/{plan['id']} action {action.get('id')}"
            rule_id, display = _rule_code(action, where)
            if action.get("id") and action["id"] != rule_id:
                raise KnowledgeError(f"{where}: action id and rule code differ")
            title, description = str(action.get("title", "")), str(action.get("description", ""))
            check_template(title, where)
            check_template(description, where)
            priority_fn = None
            for dv in action.get("dynamicValue") or []:
                if dv.get("path") == "priority":
                    priority_fn = compile_dynamic_value(str((dv.get("expression") or {}).get("expression", "")))
            level = _level(action, "basic", where)
            suggestions = []
            for child in action.get("action") or []:
                cwhere = f"{where} suggestion {child.get('id')}"
                canonical = child.get("definitionCanonical")
                action_type = _action_type(child)
                # A remove acts on the draft order itself: no ActivityDefinition, only the action's own id.
                activity = activities.get(canonical) if canonical else (
                    {"id": str(child.get("id") or "")} if action_type == "remove" else None)
                if activity is None:
                    raise KnowledgeError(f"{cwhere}: ActivityDefinition {canonical!r} not found")
                suggestions.append(SuggestionRule(
                    id=str(child.get("id") or activity["id"]),
                    label=str(child.get("title") or activity.get("title") or activity.get("id") or child.get("id")),
                    description=str(child.get("description") or activity.get("description") or ""),
                    conditions=_conditions(child, cwhere),
                    level=_level(child, _level(activity, level, cwhere), cwhere),
                    activity=activity,
                    action_type=action_type,
                ))
            citations = tuple(
                Citation(str(d.get("label") or d.get("display") or "source"), str(d.get("display") or ""),
                         d.get("url"))
                for d in action.get("documentation") or [])
            if not citations:
                raise KnowledgeError(f"{where}: every rule needs a documented source")
            rules.append(Rule(
                id=rule_id, display=display, group=str(plan["id"]), title=title, description=description,
                priority=str(action.get("priority") or "routine"), priority_fn=priority_fn, level=level,
                citations=citations, conditions=_conditions(action, where), suggestions=tuple(suggestions),
                selection_behavior=str(action.get("selectionBehavior") or "any"),
                order=order.get(rule_id, len(order)), note=str(action.get("textEquivalent") or ""),
                hooks=plan_hooks(plan, action),
            ))
    ids = [r.id for r in rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise KnowledgeError(f"rule ids defined twice: {sorted(duplicates)}")
    library = next(iter(artifacts.of("Library")), {})
    return Knowledge(rules=sorted(rules, key=lambda r: r.order), artifacts=artifacts,
                     library_description=str(library.get("description", "")), rule_ids=frozenset(ids))
