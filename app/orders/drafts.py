"""What a draft order is, clinically: the drug classes and ingredients of a draft MedicationRequest (the same
classifier as the patient's medication list) and the target and fractionation of a draft radiotherapy order."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from app.clinical.evaluation import Evaluation
from app.clinical.facts import TerminologyLike
from app.clinical.medications import MedicationClass, classify_medication
from app.orders.radiotherapy import Fractionation, is_radiotherapy_request, is_stereotactic, read_fractionation
from cds_hooks.draft_orders import DraftOrder, DraftOrders
from terminology.fhir_json import JsonValue

OPIOID_CLASSES = frozenset({"weak-opioid", "strong-opioid"})


@dataclass(frozen=True, slots=True)
class Radiotherapy:
    fractionation: Fractionation | None
    reason_refs: tuple[str, ...]          # "Condition/abc" from reasonReference
    reason_concepts: frozenset[str]       # terminology concepts of reasonCode / bodySite codings
    reason_text: str                      # reasonCode / bodySite text, lower case
    stereotactic: bool = False


@dataclass(frozen=True, slots=True)
class ClinicalDraft:
    order: DraftOrder
    name: str
    medication: MedicationClass | None = None
    radiotherapy: Radiotherapy | None = None

    @property
    def ref(self) -> str | None:
        return self.order.ref

    @property
    def label(self) -> str:
        return self.order.label

    def is_class(self, drug_class: str) -> bool:
        if self.medication is None:
            return False
        if drug_class == "opioid":
            return bool(self.medication.classes & OPIOID_CLASSES)
        return drug_class in self.medication.classes

    def has_ingredient(self, ingredient: str) -> bool:
        return self.medication is not None and ingredient in self.medication.ingredients


@dataclass(frozen=True, slots=True)
class OrderContext:
    """The draft orders of one order-select / order-sign call: `judged` are the drafts the rules fire on
    (order-select: the selections), `drafts` all of them (what is already being ordered)."""

    hook: str
    drafts: tuple[ClinicalDraft, ...]
    judged: tuple[ClinicalDraft, ...]
    incomplete: tuple[str, ...] = field(default=())

    def any_draft(self, drug_class: str) -> list[ClinicalDraft]:
        return [d for d in self.drafts if d.is_class(drug_class)]


@dataclass(slots=True)
class OrderEvaluation(Evaluation):
    """The patient's evaluation with the draft orders of one order-select / order-sign call."""

    orders: OrderContext = field(kw_only=True)


def with_orders(ev: Evaluation, orders: OrderContext) -> OrderEvaluation:
    """A copy of `ev` (which may be shared through the order cache) that also carries `orders`."""
    return OrderEvaluation(**{f.name: getattr(ev, f.name) for f in fields(ev)}, orders=orders)


def _codeable_text(cc: JsonValue) -> str:
    if not isinstance(cc, dict):
        return ""
    parts = [cc.get("text")] + [c.get("display") for c in cc.get("coding") or () if isinstance(c, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def _concepts(terminology: TerminologyLike, ccs: JsonValue) -> set[str]:
    out: set[str] = set()
    for cc in ccs if isinstance(ccs, list) else ():
        out |= terminology.concepts_of_codeable(cc)
    return out


def _radiotherapy(resource: dict[str, Any], terminology: TerminologyLike) -> Radiotherapy | None:
    concepts = terminology.concepts_of_codeable(resource.get("code"))
    if not is_radiotherapy_request(resource, concepts):
        return None
    refs = tuple(r["reference"] for r in resource.get("reasonReference") or ()
                 if isinstance(r, dict) and isinstance(r.get("reference"), str))
    reasons = list(resource.get("reasonCode") or []) + list(resource.get("bodySite") or [])
    text = " ".join(_codeable_text(cc) for cc in reasons).lower()
    # A site-specific order code (radiotherapy to bone / brain) names the target too.
    targets = _concepts(terminology, reasons) | (concepts & {"treatment-radiotherapy-bone",
                                                             "treatment-radiotherapy-brain"})
    return Radiotherapy(read_fractionation(resource), refs, frozenset(targets), text,
                        stereotactic=is_stereotactic(resource, concepts))


def _clinical(order: DraftOrder, terminology: TerminologyLike) -> ClinicalDraft:
    resource = order.resource
    if order.resource_type == "MedicationRequest":
        contained = {f"#{c['id']}": c for c in resource.get("contained") or ()
                     if isinstance(c, dict) and c.get("resourceType") == "Medication" and isinstance(c.get("id"), str)}
        med = classify_medication(resource, terminology, contained=contained)
        return ClinicalDraft(order, med.name or "a medication", medication=med)
    if order.resource_type == "ServiceRequest":
        name = _codeable_text(resource.get("code")) or "a service request"
        return ClinicalDraft(order, name.split("  ")[0][:120], radiotherapy=_radiotherapy(resource, terminology))
    return ClinicalDraft(order, order.resource_type)


def order_context(hook: str, orders: DraftOrders, terminology: TerminologyLike) -> OrderContext:
    """Classify every draft. Unfinished drafts (a required element still missing) are never judged, but what
    they order still counts as being ordered (a laxative draft without its intent yet is still a laxative)."""
    clinical = {o.index: _clinical(o, terminology) for o in orders.drafts}
    drafts = tuple(clinical.values())
    judged = tuple(clinical[o.index] for o in orders.selected if o.complete)
    incomplete = tuple(o.label for o in orders.drafts if not o.complete)
    return OrderContext(hook, drafts, judged, incomplete)
