"""The condition language of the PlanDefinitions (text/x-mbc-cds-predicate): '[not ]Name[(arg)]'.

Names resolve in the predicate table the engine is handed (app.engine.vocabulary.Vocabulary: function, accepted
arguments, what the negation rests on); names and arguments are checked when the knowledge is compiled. Nothing
clinical is decided here, no predicate is named here, and a new predicate needs no change here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.clinical.evaluation import Evaluation, Evidence

DynamicValue = Callable[[Evaluation], str]
# A condition's result: None when it does not hold, else the evidence it holds on.
Findings = list[Evidence] | None


class NegationSpec(Protocol):
    """What "not X" rests on, as the engine reads it (the clinical tables supply it: app.clinical.predicates)."""

    def withheld(self, ev: Evaluation) -> bool:
        """True when "not X" must not be claimed (the record could not tell)."""
        ...

    def evidence(self, arg: str | None) -> list[Evidence]:
        """What the absence tells the clinician."""
        ...


class PredicateSpec(Protocol):
    """A predicate under its PlanDefinition name, as the engine reads it: the function, the arguments it accepts
    (None: takes none) and what its negation rests on (None: no reading guard, no absence named)."""

    @property
    def fn(self) -> Callable[[Evaluation, str | None], Findings]: ...

    @property
    def args(self) -> Collection[str] | None: ...

    @property
    def negation(self) -> NegationSpec | None: ...

LANGUAGE = "text/x-mbc-cds-predicate"
_EXPR = re.compile(r"^(not )?([A-Z][A-Za-z0-9]*)(?:\(([a-z0-9-]+)\))?$")


class KnowledgeError(ValueError):
    """The knowledge artifacts refer to something the vocabulary does not define."""


@dataclass(frozen=True, slots=True)
class Condition:
    negate: bool
    name: str
    arg: str | None
    source: str
    # Resolved once at compile time: applying a condition looks nothing up by name.
    spec: PredicateSpec = field(compare=False, repr=False)

    def __call__(self, ev: Evaluation) -> Findings:
        spec = self.spec
        if not self.negate:
            return spec.fn(ev, self.arg)
        if spec.negation is not None and spec.negation.withheld(ev):
            # "Not on drug X", "no palliative care on record"...: not claimed from a record read in part.
            return None
        if spec.fn(ev, self.arg) is not None:
            return None
        return spec.negation.evidence(self.arg) if spec.negation is not None else []


def compile_condition(expression: str, predicates: Mapping[str, PredicateSpec]) -> Condition:
    m = _EXPR.match(expression.strip())
    if not m:
        raise KnowledgeError(f"condition {expression!r} does not follow the grammar '[not ]Name[(arg)]'")
    negate, name, arg = bool(m.group(1)), m.group(2), m.group(3)
    spec = predicates.get(name)
    if spec is None:
        raise KnowledgeError(f"condition {expression!r} names an unknown predicate {name!r}")
    if spec.args is None and arg is not None:
        raise KnowledgeError(f"predicate {name} takes no argument ({expression!r})")
    if spec.args is not None and arg not in spec.args:
        raise KnowledgeError(f"predicate {name} needs one of {sorted(spec.args)} ({expression!r})")
    return Condition(negate, name, arg, expression, spec)


def compile_dynamic_value(expression: str, priorities: Mapping[str, DynamicValue]) -> DynamicValue:
    fn = priorities.get(expression.strip())
    if fn is None:
        raise KnowledgeError(f"unknown dynamic value {expression!r}")
    return fn
