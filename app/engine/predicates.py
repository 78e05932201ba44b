"""The condition language of the PlanDefinitions (text/x-mbc-cds-predicate): '[not ]Name[(arg)]'.

Names resolve to the clinical predicates (app.clinical.predicates.PREDICATES: function, accepted arguments, what
the negation rests on) and to the order-time ones app.orders registers; names and arguments are checked when the
knowledge is loaded. Nothing clinical is decided here, and a new predicate needs no change here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from app.clinical.evaluation import Evaluation
from app.clinical.predicates import PREDICATES, PRIORITIES, Named
from app.clinical.predicates.base import Findings, Negation

Predicate = Callable[[Evaluation, str | None], Findings]
DynamicValue = Callable[[Evaluation], str]

LANGUAGE = "text/x-mbc-cds-predicate"
_EXPR = re.compile(r"^(not )?([A-Z][A-Za-z0-9]*)(?:\(([a-z0-9-]+)\))?$")


class KnowledgeError(ValueError):
    """The knowledge artifacts refer to something the engine does not define."""


# The clinical names, and the order-time ones app.orders adds (`predicate`).
REGISTRY: dict[str, Named] = dict(PREDICATES)
DYNAMIC_VALUES: dict[str, DynamicValue] = dict(PRIORITIES)


def predicate(name: str, args: frozenset[str] | None = None,
              negation: Negation | None = None) -> Callable[[Predicate], Predicate]:
    """Add a predicate defined outside app.clinical (the order-time ones of app.orders) to the table."""
    def register(fn: Predicate) -> Predicate:
        REGISTRY[name] = Named(fn, args, negation)
        return fn
    return register


@dataclass(frozen=True, slots=True)
class Condition:
    negate: bool
    name: str
    arg: str | None
    source: str

    def __call__(self, ev: Evaluation) -> Findings:
        spec = REGISTRY[self.name]
        if not self.negate:
            return spec.fn(ev, self.arg)
        if spec.negation is not None and spec.negation.withheld(ev):
            # "Not on drug X", "no palliative care on record"...: not claimed from a record read in part.
            return None
        if spec.fn(ev, self.arg) is not None:
            return None
        return spec.negation.evidence(self.arg) if spec.negation is not None else []


def compile_condition(expression: str) -> Condition:
    m = _EXPR.match(expression.strip())
    if not m:
        raise KnowledgeError(f"condition {expression!r} does not follow the grammar '[not ]Name[(arg)]'")
    negate, name, arg = bool(m.group(1)), m.group(2), m.group(3)
    spec = REGISTRY.get(name)
    if spec is None:
        raise KnowledgeError(f"condition {expression!r} names an unknown predicate {name!r}")
    if spec.args is None and arg is not None:
        raise KnowledgeError(f"predicate {name} takes no argument ({expression!r})")
    if spec.args is not None and arg not in spec.args:
        raise KnowledgeError(f"predicate {name} needs one of {sorted(spec.args)} ({expression!r})")
    return Condition(negate, name, arg, expression)


def compile_dynamic_value(expression: str) -> DynamicValue:
    fn = DYNAMIC_VALUES.get(expression.strip())
    if fn is None:
        raise KnowledgeError(f"unknown dynamic value {expression!r}")
    return fn
