"""Compile the PlanDefinitions once at start-up into rules the engine can apply in microseconds.

The names the artifacts use (predicates, priorities, template keys) resolve in the vocabulary the caller hands
in (app.engine.vocabulary); an unknown name or argument stops start-up with a KnowledgeError.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from app.engine.context import check_template
from app.engine.predicates import (
    LANGUAGE,
    Condition,
    DynamicValue,
    KnowledgeError,
    compile_condition,
    compile_dynamic_value,
)
from app.engine.vocabulary import Vocabulary
from app.settings import RESOURCE_LEVELS
from cds_hooks.cards import Indicator, SelectionBehavior
from plandefinitions.loader import (
    CARD_LINK_URL,
    CARD_TIER_URL,
    DISPLAY_RANK_URL,
    LEVEL_TITLE_URL,
    RESOURCE_LEVEL_MAX_URL,
    RESOURCE_LEVEL_URL,
    RULE_SYSTEM,
    WORKLIST_TIER_URL,
    Artifacts,
    load_artifacts,
    plan_hooks,
)
from plandefinitions.worklist_tiers import WorklistTier, WorklistTiers, worklist_tiers

PRIORITY_TO_INDICATOR: dict[str, Indicator] = {"routine": "info", "urgent": "warning", "asap": "warning",
                                                "stat": "critical"}
INDICATOR_RANK: dict[Indicator, int] = {"critical": 0, "warning": 1, "info": 2}
# The selectionBehavior values CDS Hooks 2.0 defines for a card (FHIR's others have no meaning there).
SELECTION_BEHAVIORS: dict[str, SelectionBehavior] = {"any": "any", "at-most-one": "at-most-one"}

CARD_TIERS = frozenset({"overview", "emergency", "uncapped"})
CARD_LINKS = frozenset({"acp-app", "assessment-form"})
# Level-true text: a description line tagged "[limited+] " shows from that level up, "[below limited] " only
# under it; the tag may follow a list bullet.
_LINE_TAG = re.compile(r"^(\s*(?:- )?)\[(?:(basic|limited|enhanced|maximal)\+|below (limited|enhanced|maximal))\] ")


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
    max_level: str = "maximal"
    # A drafted Task carries a description (the ActivityDefinition's): a template like the label and description.
    task_description: str = ""

    def offered_at(self, level: str) -> bool:
        rank = RESOURCE_LEVELS.index(level)
        return RESOURCE_LEVELS.index(self.level) <= rank <= RESOURCE_LEVELS.index(self.max_level)


@dataclass(frozen=True)
class Rule:
    id: str
    display: str
    title: str
    description: str
    priority: str
    priority_fn: DynamicValue | None
    level: str
    citations: tuple[Citation, ...]
    conditions: tuple[Condition, ...]
    suggestions: tuple[SuggestionRule, ...]
    selection_behavior: SelectionBehavior
    order: int
    hooks: tuple[str, ...] = ("patient-view",)   # the CDS hooks whose trigger events fire this rule
    tier: str | None = None                     # overview | emergency | uncapped (card-tier extension)
    worklist_tier: WorklistTier | None = None   # worklist-tier extension, a tier of the worklist CodeSystem
    link: str | None = None                     # a configured app link the card carries
    level_titles: tuple[tuple[str, str], ...] = ()   # (from level, title), lowest level first

    def title_at(self, level: str) -> str:
        """The summary template at a resource level: the last variant whose level is reached, else `title`."""
        chosen = self.title
        for from_level, title in self.level_titles:
            if RESOURCE_LEVELS.index(from_level) <= RESOURCE_LEVELS.index(level):
                chosen = title
        return chosen

    def description_at(self, level: str) -> str:
        return text_at_level(self.description, level)

    @property
    def emergency(self) -> bool:
        return self.tier == "emergency"

    @property
    def uncapped(self) -> bool:
        """Never capped, never held back (the overview and what could not be read)."""
        return self.tier in ("overview", "uncapped")


def _selection_behavior(action: dict[str, Any], where: str) -> SelectionBehavior:
    value = str(action.get("selectionBehavior") or "any")
    if value not in SELECTION_BEHAVIORS:
        raise KnowledgeError(f"{where}: selectionBehavior must be one of {sorted(SELECTION_BEHAVIORS)}")
    return SELECTION_BEHAVIORS[value]


def text_at_level(text: str, level: str) -> str:
    """Keep the lines of a description that the resource level offers, without their tags."""
    rank = RESOURCE_LEVELS.index(level)
    out: list[str] = []
    for line in text.split("\n"):
        m = _LINE_TAG.match(line)
        if m is None:
            out.append(line)
            continue
        at_least, below = m.group(2), m.group(3)
        if at_least is not None and rank < RESOURCE_LEVELS.index(at_least):
            continue
        if below is not None and rank >= RESOURCE_LEVELS.index(below):
            continue
        out.append(m.group(1) + line[m.end():])
    return "\n".join(out)


def _extension_code(action: dict[str, Any], url: str, allowed: frozenset[str], where: str) -> str | None:
    for ext in action.get("extension") or []:
        if ext.get("url") == url:
            code = ext.get("valueCode")
            if code not in allowed:
                raise KnowledgeError(f"{where}: {url.rsplit('/', 1)[1]} must be one of {sorted(allowed)}")
            return str(code)
    return None


def _worklist_tier(action: dict[str, Any], tiers: WorklistTiers, where: str) -> WorklistTier | None:
    codes = frozenset(t.code for t in tiers.tiers)
    code = _extension_code(action, WORKLIST_TIER_URL, codes, where)
    return tiers.get(code) if code is not None else None


def _display_rank(action: dict[str, Any], fallback: int) -> int:
    """The display-rank extension; a rule without one sorts after every ranked rule, in file order."""
    for ext in action.get("extension") or []:
        if ext.get("url") == DISPLAY_RANK_URL and isinstance(ext.get("valueInteger"), int):
            return int(ext["valueInteger"])
    return 100_000 + fallback


def _level_titles(action: dict[str, Any], where: str, keys: Collection[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for ext in action.get("extension") or []:
        if ext.get("url") != LEVEL_TITLE_URL:
            continue
        parts = {e.get("url"): e for e in ext.get("extension") or []}
        level = (parts.get("level") or {}).get("valueCode")
        title = (parts.get("title") or {}).get("valueString")
        if level not in RESOURCE_LEVELS or not isinstance(title, str):
            raise KnowledgeError(f"{where}: level-title needs a level code and a title string")
        check_template(title, where, keys)
        out.append((str(level), title))
    return tuple(sorted(out, key=lambda t: RESOURCE_LEVELS.index(t[0])))


@dataclass
class Knowledge:
    rules: list[Rule]
    artifacts: Artifacts
    vocabulary: Vocabulary
    worklist_tiers: WorklistTiers


def _level(element: dict[str, Any], default: str, where: str, url: str = RESOURCE_LEVEL_URL) -> str:
    for ext in element.get("extension") or []:
        if ext.get("url") == url:
            level = ext.get("valueCode")
            if level not in RESOURCE_LEVELS:
                raise KnowledgeError(f"{where}: unknown resource level {level!r}")
            return str(level)
    return default


def _conditions(action: dict[str, Any], where: str, vocabulary: Vocabulary) -> tuple[Condition, ...]:
    out = []
    for cond in action.get("condition") or []:
        expr = cond.get("expression") or {}
        if cond.get("kind") != "applicability":
            continue
        if expr.get("language") != LANGUAGE:
            raise KnowledgeError(f"{where}: condition language must be {LANGUAGE}")
        try:
            out.append(compile_condition(str(expr.get("expression", "")), vocabulary.predicates))
        except KnowledgeError as exc:
            raise KnowledgeError(f"{where}: {exc}") from exc
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


def compile_knowledge(artifacts: Artifacts | None = None, *, vocabulary: Vocabulary) -> Knowledge:
    """The rules of `artifacts` (default: the shipped ones) over `vocabulary`, checked and in display order."""
    artifacts = artifacts or load_artifacts()
    keys = vocabulary.values.keys()
    activities = {a.get("url"): a for a in artifacts.of("ActivityDefinition")}
    tiers = worklist_tiers(artifacts)
    rules: list[Rule] = []
    for plan in sorted(artifacts.of("PlanDefinition"), key=lambda p: p["id"]):
        for action in plan.get("action") or []:
            where = f"PlanDefinition/{plan['id']} action {action.get('id')}"
            rule_id, display = _rule_code(action, where)
            if action.get("id") and action["id"] != rule_id:
                raise KnowledgeError(f"{where}: action id and rule code differ")
            title, description = str(action.get("title", "")), str(action.get("description", ""))
            check_template(title, where, keys)
            for level_name in RESOURCE_LEVELS:
                check_template(text_at_level(description, level_name), where, keys)
            priority_fn = None
            for dv in action.get("dynamicValue") or []:
                if dv.get("path") == "priority":
                    priority_fn = compile_dynamic_value(str((dv.get("expression") or {}).get("expression", "")),
                                                        vocabulary.priorities)
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
                label = str(child.get("title") or activity.get("title") or activity.get("id") or child.get("id"))
                text = str(child.get("description") or activity.get("description") or "")
                task_description = str(activity.get("description") or activity.get("title") or "") \
                    if activity.get("kind") == "Task" else ""
                for template in (label, text, task_description):
                    check_template(template, cwhere, keys)
                suggestions.append(SuggestionRule(
                    id=str(child.get("id") or activity["id"]),
                    label=label,
                    description=text,
                    conditions=_conditions(child, cwhere, vocabulary),
                    level=_level(child, _level(activity, level, cwhere), cwhere),
                    activity=activity,
                    action_type=action_type,
                    max_level=_level(child, "maximal", cwhere, RESOURCE_LEVEL_MAX_URL),
                    task_description=task_description,
                ))
            citations = tuple(
                Citation(str(d.get("label") or d.get("display") or "source"), str(d.get("display") or ""),
                         d.get("url"))
                for d in action.get("documentation") or [])
            if not citations:
                raise KnowledgeError(f"{where}: every rule needs a documented source")
            rules.append(Rule(
                id=rule_id, display=display, title=title, description=description,
                priority=str(action.get("priority") or "routine"), priority_fn=priority_fn, level=level,
                citations=citations, conditions=_conditions(action, where, vocabulary),
                suggestions=tuple(suggestions),
                selection_behavior=_selection_behavior(action, where),
                order=_display_rank(action, len(rules)),
                tier=_extension_code(action, CARD_TIER_URL, CARD_TIERS, where),
                worklist_tier=_worklist_tier(action, tiers, where),
                link=_extension_code(action, CARD_LINK_URL, CARD_LINKS, where),
                level_titles=_level_titles(action, where, keys),
                hooks=plan_hooks(plan, action),
            ))
    ids = [r.id for r in rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise KnowledgeError(f"rule ids defined twice: {sorted(duplicates)}")
    ranks = [r.order for r in rules]
    if len(set(ranks)) != len(ranks):
        raise KnowledgeError("two rules share a display-rank: the display order must be total")
    return Knowledge(rules=sorted(rules, key=lambda r: r.order), artifacts=artifacts, vocabulary=vocabulary,
                     worklist_tiers=tiers)
