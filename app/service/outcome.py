"""What one evaluation gives: the cards, the rules behind them, and the evaluation they read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.engine import FiredRule
from app.engine.evaluation import Evaluation
from cds_hooks.fallback import FetchProblem


@dataclass
class HookOutcome:
    cards: list[dict[str, Any]]
    fired: list[FiredRule]
    evaluation: Evaluation
    problems: list[FetchProblem] = field(default_factory=list)
    resolve_ms: float = 0.0
    evaluate_ms: float = 0.0

    @property
    def rule_ids(self) -> list[str]:
        return [f.rule.id for f in self.fired]
