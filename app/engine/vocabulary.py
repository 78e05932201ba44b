"""The names the PlanDefinitions may use, as the engine is handed them: the predicates conditions name, the
priorities dynamicValues name and the card template keys; and the clinical frame every card is laid out in
(app.engine.frame).

The engine defines none of them: it knows the grammar and the card layout, not the medicine. The service assembles
the vocabulary of the shipped knowledge from the clinical tables and the order-time ones (app.service.knowledge)
and passes it to `compile_knowledge`; a deployment or a test may pass a larger one (`extended`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.engine.context import CardValue
from app.engine.frame import CardFrame
from app.engine.predicates import DynamicValue, KnowledgeError, PredicateSpec


def _refuse_overlap(name: str, base: Mapping[str, object], more: Mapping[str, object]) -> None:
    twice = sorted(set(base) & set(more))
    if twice:
        # Shadowing a name would silently change what a shipped rule means.
        raise KnowledgeError(f"{name} defined twice in the vocabulary: {twice}")


@dataclass(frozen=True)
class Vocabulary:
    predicates: Mapping[str, PredicateSpec]
    priorities: Mapping[str, DynamicValue]
    values: Mapping[str, CardValue]
    frame: CardFrame

    def __post_init__(self) -> None:
        # Read-only copies: a caller's table changed later cannot change compiled knowledge.
        object.__setattr__(self, "predicates", MappingProxyType(dict(self.predicates)))
        object.__setattr__(self, "priorities", MappingProxyType(dict(self.priorities)))
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def extended(self, *, predicates: Mapping[str, PredicateSpec] | None = None,
                 priorities: Mapping[str, DynamicValue] | None = None,
                 values: Mapping[str, CardValue] | None = None) -> Vocabulary:
        """This vocabulary and more names, in the same frame; a name it already has is refused (KnowledgeError)."""
        more_predicates, more_priorities, more_values = predicates or {}, priorities or {}, values or {}
        _refuse_overlap("predicates", self.predicates, more_predicates)
        _refuse_overlap("priorities", self.priorities, more_priorities)
        _refuse_overlap("template keys", self.values, more_values)
        return Vocabulary({**self.predicates, **more_predicates}, {**self.priorities, **more_priorities},
                          {**self.values, **more_values}, self.frame)
