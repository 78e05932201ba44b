"""`context.draftOrders` of the order-select and order-sign hooks: a FHIR Bundle of draft orders.

Each order resource the service judges (MedicationRequest, ServiceRequest) is validated with fhir.resources
(R4). A draft the user has not finished (a required element such as `intent` still missing: the CDS Hooks
Sandbox fires order-select as its Rx View tab opens with exactly such a draft) is kept but marked incomplete, so
it is answered with no card rather than an error. Anything else that is not valid FHIR is a DraftOrderError
naming the entry and the element. Nothing here knows about any clinical domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["JUDGED_TYPES", "DraftOrder", "DraftOrderError", "DraftOrders", "parse_draft_orders"]

JUDGED_TYPES = frozenset({"MedicationRequest", "ServiceRequest"})
MAX_DRAFTS = 200


class DraftOrderError(ValueError):
    """`context.draftOrders` is malformed (HTTP 400); the message names the entry and the element."""


@dataclass(frozen=True, slots=True)
class DraftOrder:
    index: int
    resource_type: str
    resource: dict[str, Any]
    ref: str | None           # "MedicationRequest/request-123"; None when the draft has no id
    complete: bool            # False: a required element is still missing (the user is still filling it in)
    missing: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.ref or f"{self.resource_type} (entry {self.index}, no id)"


@dataclass(frozen=True, slots=True)
class DraftOrders:
    drafts: tuple[DraftOrder, ...]
    selected: tuple[DraftOrder, ...]      # order-select: the drafts named in `selections`; order-sign: all


def _message(exc: ValidationError, errors: list[Any]) -> str:
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "resource"
        parts.append(f"{loc}: {str(err.get('msg', 'invalid'))[:120]}")
    return "; ".join(parts)


def _validate(resource: dict[str, Any], where: str) -> tuple[str, ...]:
    """Missing required elements (the draft is unfinished); raises DraftOrderError for anything else."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError as exc:
        # An element R4 does not define (an STU3 client's `dosageInstruction[].doseQuantity`) is tolerated: the
        # service reads only R4 elements. A missing required element marks an unfinished draft. Anything else
        # (a wrong type, a bad code or date) is an error.
        errors = [e for e in exc.errors() if not str(e.get("type", "")).startswith("extra_forbidden")]
        if all(str(e.get("type", "")).endswith("missing") for e in errors):
            return tuple(".".join(str(x) for x in e.get("loc", ())) for e in errors)
        raise DraftOrderError(f"{where} is not a valid FHIR R4 {resource['resourceType']}: "
                              f"{_message(exc, errors)}") from None
    except (ValueError, TypeError) as exc:
        raise DraftOrderError(f"{where} is not a valid FHIR R4 {resource['resourceType']}: {str(exc)[:200]}") \
            from None
    return ()


def parse_draft_orders(bundle: Any, selections: Sequence[str] | None = None) -> DraftOrders:
    """The drafts of a draftOrders Bundle. With `selections` (order-select), only the drafts they name are
    `selected`; a selection naming no draft is counted, not an error (the draft may have been removed)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DraftOrderError("context.draftOrders must be a FHIR Bundle")
    entries = bundle.get("entry", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise DraftOrderError("context.draftOrders.entry must be a list")
    if len(entries) > MAX_DRAFTS:
        raise DraftOrderError(f"context.draftOrders holds more than {MAX_DRAFTS} entries")
    drafts: list[DraftOrder] = []
    for i, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise DraftOrderError(f"{where} has no resource")
        resource = entry["resource"]
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            raise DraftOrderError(f"{where}.resource has no resourceType")
        rid = resource.get("id")
        if rid is not None and (not isinstance(rid, str) or not rid.strip()):
            raise DraftOrderError(f"{where}.resource.id must be a non-empty string")
        ref = f"{rtype}/{rid}" if rid else None
        missing: tuple[str, ...] = ()
        if rtype in JUDGED_TYPES:
            missing = _validate(resource, f"{where} ({ref or rtype})")
        drafts.append(DraftOrder(i, rtype, resource, ref, complete=not missing, missing=missing))
    if selections is None:
        return DraftOrders(tuple(drafts), tuple(drafts))
    wanted = set(selections)
    selected = tuple(d for d in drafts if d.ref is not None and d.ref in wanted)
    return DraftOrders(tuple(drafts), selected)
