"""Generate docs/rules.md from the PlanDefinitions: every rule with its trigger, card, source and level.

`python -m plandefinitions.docs [OUT]` writes the file; a test checks the committed file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from plandefinitions.loader import CARD_TIER_URL, DISPLAY_RANK_URL, LEVEL_TITLE_URL, RESOURCE_LEVEL_URL, load_artifacts

PRIORITY = {"routine": "info", "urgent": "warning", "asap": "warning", "stat": "critical"}


def _level(element: dict[str, Any], default: str = "basic") -> str:
    for ext in element.get("extension") or []:
        if ext.get("url") == RESOURCE_LEVEL_URL:
            return str(ext.get("valueCode"))
    return default


def _conditions(action: dict[str, Any]) -> str:
    exprs = [c["expression"]["expression"] for c in action.get("condition") or [] if c.get("expression")]
    return " AND ".join(f"`{e}`" for e in exprs) or "always"


def _ext(action: dict[str, Any], url: str) -> Any:
    for ext in action.get("extension") or []:
        if ext.get("url") == url:
            return ext.get("valueCode", ext.get("valueInteger"))
    return None


def _card(action: dict[str, Any]) -> str:
    """The summary template, with the variants a higher resource level uses."""
    parts = [str(action.get("title", ""))]
    for ext in action.get("extension") or []:
        if ext.get("url") == LEVEL_TITLE_URL:
            sub = {e["url"]: e for e in ext.get("extension") or []}
            parts.append(f"from {sub['level']['valueCode']}: {sub['title']['valueString']}")
    return "<br>".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    artifacts = load_artifacts()
    activities = {a["url"]: a for a in artifacts.of("ActivityDefinition")}
    lines = [
        "# Rules (generated from plandefinitions/ by `python -m plandefinitions.docs`; do not edit)",
        "",
        "Each rule is one PlanDefinition action; its conditions name predicates documented in",
        "`plandefinitions/Library-mbc-cds-predicates.json`. Indicator: info / warning / critical from the action",
        "priority (a dynamic value may raise it). Level: the lowest BHGI resource level at which the card fires;",
        "each suggestion has its own level. Description lines tagged `[limited+]` / `[below enhanced]` show only at",
        "those levels, so a card never names what the configured level does not offer. Rank: display order within",
        "one indicator (the info cap drops from the end); tier: `overview` and `uncapped` are never capped or held",
        "back (nor snoozed); a card that is critical when it fires is never snoozed.",
        "",
    ]
    for plan in sorted(artifacts.of("PlanDefinition"), key=lambda p: p["id"]):
        lines += [f"## {plan.get('title', plan['id'])} (`PlanDefinition/{plan['id']}`)", ""]
        lines += ["| rule | rank / tier | fires when | card (summary template) | indicator | level "
                  "| suggestions (level) "
                  "| source |", "|---|---|---|---|---|---|---|---|"]
        for action in plan.get("action") or []:
            dyn = [d["expression"]["expression"] for d in action.get("dynamicValue") or []
                   if d.get("path") == "priority"]
            indicator = PRIORITY.get(action.get("priority", "routine"), "info") + (f" ({dyn[0]})" if dyn else "")
            suggestions = []
            for child in action.get("action") or []:
                activity = activities.get(child.get("definitionCanonical"), {})
                kind = activity.get("kind", "?")
                suggestions.append(f"{child.get('title', child.get('id'))} [{kind}] "
                                   f"({_level(child, _level(activity))})")
            sources = "; ".join(d.get("label", "") for d in action.get("documentation") or [])
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"`{action['id']}`", f"{_ext(action, DISPLAY_RANK_URL)} / {_ext(action, CARD_TIER_URL) or '-'}",
                _conditions(action), _card(action), indicator, _level(action),
                "<br>".join(suggestions) or "-", sources)) + " |")
        lines.append("")
        notes = [(a["id"], a["textEquivalent"]) for a in plan.get("action") or [] if a.get("textEquivalent")]
        if notes:
            lines += ["Readings chosen where the source was ambiguous:", ""]
            lines += [f"- `{rid}`: {_cell(text)}" for rid, text in notes]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/rules.md")
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
