"""Values that card templates ({key} in PlanDefinition titles and descriptions) may use.

Computed lazily per request; the set of keys is fixed so that templates are checked when knowledge loads.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from app.clinical.card_values import CARD_VALUES
from app.clinical.evaluation import Evaluation
from app.engine.predicates import KnowledgeError

# The clinical values, and the order-time keys app.orders registers.
VALUES: dict[str, Callable[[Evaluation], str]] = dict(CARD_VALUES)


class TemplateValues(dict[str, str]):
    """A dict that computes a template value the first time it is asked for."""

    def __init__(self, ev: Evaluation) -> None:
        super().__init__()
        self._ev = ev

    def __missing__(self, key: str) -> str:
        value = VALUES[key](self._ev)
        self[key] = value
        return value


_FORMATTER = string.Formatter()


def check_template(template: str, where: str) -> None:
    try:
        fields = [name for _, name, _spec, _conv in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        raise KnowledgeError(f"{where}: bad template {template!r}: {exc}") from exc
    for name in fields:
        if name not in VALUES:
            raise KnowledgeError(f"{where}: unknown template key {{{name}}}")


def render(template: str, values: TemplateValues) -> str:
    return template.format_map(values)
