"""JSON output for CDS Hooks documents.

CDS Hooks 2.0: "null, "", [] or {} are prohibited; OPTIONAL attributes without a value are omitted" - the
one exception is the response's `cards`, which is always present (`{"cards": []}` means "no guidance").
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from cds_hooks.models import HookResponse

__all__ = ["dump", "prune"]

_OPTS = orjson.OPT_NON_STR_KEYS


def prune(value: Any) -> Any:
    """Return `value` with None, "", [] and {} removed recursively (from dicts and from lists).

    Returns `None` when the whole value is empty.  0 and False are values and are kept.
    """
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            v = prune(v)
            if v is not None:
                out[k] = v
        return out or None
    if isinstance(value, list | tuple):
        items = [p for p in (prune(v) for v in value) if p is not None]
        return items or None
    if value is None or value == "":
        return None
    return value


_TOP_LEVEL_ARRAYS = ("cards", "services")


def dump(obj: Any) -> bytes:
    """Serialize a model (or plain JSON-able data) to compact JSON bytes without empty values.

    The top-level arrays `cards` (hook response) and `services` (discovery) are kept even when empty;
    a `HookResponse` always has `"cards"`.  `systemActions` disappears when empty like any optional field.
    """
    if isinstance(obj, BaseModel):
        # exclude_none runs in pydantic-core (fast); mode="json" turns every value into a JSON type
        data = obj.model_dump(mode="json", exclude_none=True)
    else:
        data = obj
    keep = [k for k in _TOP_LEVEL_ARRAYS if isinstance(data, dict) and k in data]
    if isinstance(obj, HookResponse) and "cards" not in keep:
        keep.append("cards")
    pruned = prune(data)
    if isinstance(data, dict):
        pruned = pruned or {}
        for k in keep:
            if k not in pruned:
                pruned = {k: [], **pruned}
    return orjson.dumps(pruned, option=_OPTS)
