"""The knowledge the service runs: the PlanDefinitions compiled over the service's vocabulary.

The vocabulary is assembled here, above the engine: the clinical predicates, priorities and card values
(app.clinical), the order-time ones (app.orders.predicates), the clinical frame of every card
(app.clinical.card_frame: scope, the overview, the lines around a "Why", draft reasons and draft safety) and the
data-incomplete summary, built to fit the card's summary limit (app.read_gaps). The engine receives it and names
none of them, so a new rule is a PlanDefinition action plus, when it needs one, a clinical function and its line
in a table; no module of app/engine changes (docs/design.md, "A new rule"; tests/test_add_a_rule.py).
"""

from __future__ import annotations

from typing import get_args

from app.clinical.card_frame import CARD_FRAME
from app.clinical.card_values import CARD_VALUES
from app.clinical.phase import PhaseName
from app.clinical.predicates import PREDICATES, PRIORITIES
from app.engine.knowledge import Knowledge, compile_knowledge
from app.engine.predicates import KnowledgeError
from app.engine.vocabulary import Vocabulary
from app.orders.predicates import ORDER_CARD_VALUES, ORDER_PREDICATES, ORDER_PRIORITIES
from app.read_gaps import READ_GAP_VALUES
from plandefinitions.loader import Artifacts

SERVICE_VOCABULARY = Vocabulary(PREDICATES, PRIORITIES, CARD_VALUES, CARD_FRAME).extended(
    predicates=ORDER_PREDICATES, priorities=ORDER_PRIORITIES, values={**ORDER_CARD_VALUES, **READ_GAP_VALUES})


def load_knowledge(artifacts: Artifacts | None = None, vocabulary: Vocabulary = SERVICE_VOCABULARY) -> Knowledge:
    """The shipped artifacts (or `artifacts`) compiled over the service's vocabulary (or `vocabulary`); a
    worklist tier may only name a phase the clinical code decides."""
    knowledge = compile_knowledge(artifacts, vocabulary=vocabulary)
    phases = get_args(PhaseName)
    for tier in knowledge.worklist_tiers.tiers:
        if tier.phase is not None and tier.phase not in phases:
            raise KnowledgeError(f"worklist tier {tier.code}: phase {tier.phase!r} is not one of {list(phases)}")
    return knowledge
