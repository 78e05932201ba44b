"""Values that card templates ({key} in PlanDefinition titles and descriptions) may use.

Computed lazily per request from the vocabulary's template keys (app.engine.vocabulary); the set of keys is
fixed when the knowledge is compiled, so that templates are checked then.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Collection, Mapping

from app.clinical.evaluation import Evaluation
from app.engine.predicates import KnowledgeError

CardValue = Callable[[Evaluation], str]


class TemplateValues(dict[str, str]):
    """A dict that computes a template value the first time it is asked for."""

    def __init__(self, ev: Evaluation, values: Mapping[str, CardValue]) -> None:
        super().__init__()
        self._ev = ev
        self._values = values

    def __missing__(self, key: str) -> str:
        value = self._values[key](self._ev)
        self[key] = value
        return value


_FORMATTER = string.Formatter()


def check_template(template: str, where: str, keys: Collection[str]) -> None:
    try:
        fields = [name for _, name, _spec, _conv in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        raise KnowledgeError(f"{where}: bad template {template!r}: {exc}") from exc
    for name in fields:
        if name not in keys:
            raise KnowledgeError(f"{where}: unknown template key {{{name}}}")


def render(template: str, values: TemplateValues) -> str:
    return template.format_map(values)
