"""What commands print: JSON, and cards as a table."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import orjson


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def render_cards_table(cards: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    """The cards as text, from this service's engine or from any CDS service's JSON answer."""
    if not cards:
        return "No cards: the service has nothing to say for this patient."
    lines: list[str] = []
    for i, card in enumerate(cards, 1):
        topic = (card.get("source") or {}).get("topic") or {}
        lines.append(f"{i:>2}. [{card.get('indicator', '?'):<8}] {card.get('summary', '')}")
        lines.append(f"    rule: {topic.get('code', '?')}   source: {(card.get('source') or {}).get('label', '')}")
        for s in card.get("suggestions") or []:
            resource = (s.get("actions") or [{}])[0].get("resource") or {}
            lines.append(f"    -> suggestion: {s.get('label')} ({resource.get('resourceType', '?')} "
                         f"{resource.get('status', '')}/{resource.get('intent', '')})")
    return "\n".join(textwrap.shorten(line, width=width + 40, placeholder="...") if len(line) > width + 40
                     else line for line in lines)
