"""Draft orders from a file, for `evaluate --draft` and `hook --draft`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


class DraftFileError(ValueError):
    """The file holds no draft orders; the message says why (each command chooses its exit code)."""


def read_draft_orders(path: str) -> dict[str, Any]:
    """A draftOrders Bundle from a JSON file holding a Bundle or a single order resource."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise DraftFileError(f"cannot read draft orders from {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise DraftFileError(f"{path} is not a FHIR resource")
    if data["resourceType"] == "Bundle":
        return data
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": data}]}
