"""What one evaluation gives: the cards, the rules behind them, and the evaluation they read."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.clinical.evaluation import Evaluation
from app.engine.engine import FiredRule
from cds_hooks.cards import Card
from cds_hooks.fallback import FetchProblem


@dataclass
class HookOutcome:
    cards: list[Card]
    fired: list[FiredRule]
    evaluation: Evaluation
    problems: list[FetchProblem] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        return [f.rule.id for f in self.fired]
