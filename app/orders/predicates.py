"""Order-time predicates (clinical-rules section 5b), named in PlanDefinition-order-time conditions.

They read the draft orders of an OrderEvaluation (app.orders.drafts) besides the patient facts; at patient-view
there are no draft orders and every one of them is false. A predicate that fires on draft orders returns
DraftEvidence naming the draft, so the card can say which order it is about and its suggestions can act on that
draft. Absence claims ("no laxative", "no seizure on record") are withheld when the record they rest on could not
be read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from app.clinical import thresholds as T
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.facts import Allergy
from app.clinical.fhirtime import fmt_date
from app.clinical.medications import MedicationClass
from app.clinical.predicates.base import Findings, Named, medications_unknown
from app.orders.drafts import ClinicalDraft, OrderContext, OrderEvaluation

# Site and reason concepts that put a radiotherapy draft on bone (terminology value set ids).
_BONE_CONCEPTS = frozenset({"metastasis-bone", "metastasis-spine", "bodysite-bone", "bodysite-spine",
                            "bodysite-long-bone", "pathological-fracture", "treatment-radiotherapy-bone"})
_BONE_WORDS = ("bone", "spine", "spinal", "vertebra", "rib", "pelvi", "femur", "humerus", "sacrum", "skelet",
               "acetabul", "sternum", "scapula", "clavicle", "iliac", "hip")
_OTHER_SITE_CONCEPTS = frozenset({"metastasis-brain", "bodysite-brain", "metastasis-liver", "bodysite-liver",
                                  "metastasis-lung", "bodysite-lung", "metastasis-skin", "bodysite-skin",
                                  "metastasis-pleura", "bodysite-pleura", "metastasis-peritoneum-bowel",
                                  "bodysite-peritoneum-bowel", "breast-primary", "treatment-radiotherapy-brain"})
_SURGERY = ("neurosurgery", "orthopaedic-fixation")
ZOLEDRONIC_ACID = "zoledronic acid"


@dataclass(frozen=True, slots=True)
class DraftEvidence(Evidence):
    """Evidence about one draft order; `values` fill the card's template keys for this rule."""

    draft: ClinicalDraft | None = None
    values: tuple[tuple[str, str], ...] = ()


def _orders(ev: Evaluation) -> OrderContext | None:
    return ev.orders if isinstance(ev, OrderEvaluation) else None


def _draft_line(d: ClinicalDraft, what: str = "draft order") -> str:
    return f"{what}: {d.name}"


def _draft_evidence(d: ClinicalDraft, text: str, *refs: str, **values: str) -> DraftEvidence:
    own = (d.ref,) if d.ref else ()
    return DraftEvidence(text, own + refs, draft=d, values=tuple(values.items()))


# -- which drafts ---------------------------------------------------------------------------------------
_DRUG_ARGS = frozenset({"opioid", "laxative", "stimulant-laxative", "anticonvulsant", "bone-modifying-agent",
                        "morphine"})
_INGREDIENT_ARGS = frozenset({"morphine"})


def _matches(d: ClinicalDraft, arg: str) -> bool:
    return d.has_ingredient(arg) if arg in _INGREDIENT_ARGS else d.is_class(arg)


def _draft_drug(ev: Evaluation, arg: str | None) -> Findings:
    """A judged draft orders a drug of this class (or this ingredient)."""
    orders = _orders(ev)
    if orders is None or arg is None:
        return None
    found: list[Evidence] = [_draft_evidence(d, _draft_line(d), draft=d.name)
                             for d in orders.judged if _matches(d, arg)]
    return found or None


def _draft_drug_tolerated(ev: Evaluation, arg: str | None) -> Findings:
    """A judged draft of this class the patient has no recorded allergy to (the allergy card covers the rest)."""
    found: list[Evidence] = [e for e in _draft_drug(ev, arg) or [] if isinstance(e, DraftEvidence)
                             and e.draft is not None and draft_allergy(ev, e.draft) is None]
    return found or None


def _no_laxative(ev: Evaluation, _: str | None) -> Findings:
    """No active laxative on record and none among the draft orders; never claimed on an incomplete list."""
    orders = _orders(ev)
    if orders is None or orders.any_draft("laxative") or ev.facts.on_drug("laxative"):
        return None
    if medications_unknown(ev):
        return None
    return [Evidence("no active laxative on the medication list and none among the draft orders")]


# -- allergy --------------------------------------------------------------------------------------------
def _allergy_text(a: Allergy) -> str:
    parts = [f"recorded allergy or intolerance to {a.label}"]
    if a.reaction:
        parts.append(f"reaction: {a.reaction}")
    if a.criticality:
        parts.append(f"criticality: {a.criticality}")
    if a.when is not None:
        parts.append(f"recorded {fmt_date(a.when)}")
    return parts[0] + (f" ({'; '.join(parts[1:])})" if len(parts) > 1 else "")


def medication_allergy(ev: Evaluation, med: MedicationClass | None, name: str) -> Allergy | None:
    """The recorded allergy a medication would meet: by ingredient, by class, or (for a drug neither side could
    classify) by the allergy's own name written as a whole word in the medication's name."""
    if med is None:
        return None
    for ingredient in sorted(med.ingredients):
        hit = ev.facts.allergy_to(ingredient, None)
        if hit is not None:
            return hit
    for cls in sorted(med.classes):
        hit = ev.facts.allergy_to(None, cls)
        if hit is not None:
            return hit
    lowered = f" {' '.join(re.findall(r'[a-z0-9]+', name.lower()))} "
    for allergy in ev.facts.allergies:
        words = " ".join(re.findall(r"[a-z0-9]+", allergy.label.lower()))
        if len(words) >= 4 and f" {words} " in lowered:
            return allergy
    return None


def draft_allergy(ev: Evaluation, d: ClinicalDraft) -> Allergy | None:
    return medication_allergy(ev, d.medication, d.name)


def _draft_allergen(ev: Evaluation, _: str | None) -> Findings:
    orders = _orders(ev)
    if orders is None:
        return None
    found: list[Evidence] = []
    for d in orders.judged:
        allergy = draft_allergy(ev, d)
        if allergy is not None:
            found.append(_draft_evidence(d, f"{_draft_line(d)}: {_allergy_text(allergy)}", allergy.ref,
                                         draft=d.name, allergy=allergy.label))
    return found or None


# -- radiotherapy ---------------------------------------------------------------------------------------
def _bone_target(ev: Evaluation, d: ClinicalDraft) -> bool:
    rt = d.radiotherapy
    if rt is None:
        return False
    facts = ev.facts
    bone_refs = set().union(*(facts.sites[s].refs for s in ("bone", "spine", "long-bone") if s in facts.sites))
    other_refs = set().union(*(f.refs for s, f in facts.sites.items() if s not in ("bone", "spine", "long-bone")))
    if rt.reason_concepts & _BONE_CONCEPTS or bone_refs & set(rt.reason_refs) \
            or any(w in rt.reason_text for w in _BONE_WORDS):
        return True
    if rt.reason_concepts & _OTHER_SITE_CONCEPTS or other_refs & set(rt.reason_refs) or rt.reason_text:
        return False  # the order names a target, and it is not bone
    # No target named: bone only when bone is the only metastatic site radiotherapy would be aimed at.
    return bool(bone_refs) and "brain" not in facts.sites and "skin" not in facts.sites


def bone_radiotherapy_drafts(ev: Evaluation) -> list[ClinicalDraft]:
    """Judged radiotherapy drafts for bone metastases prescribed in more than one fraction (or unreadable)."""
    orders = _orders(ev)
    if orders is None or not ev.facts.has_site("bone"):
        return []
    out = []
    for d in orders.judged:
        if d.radiotherapy is None or d.radiotherapy.stereotactic or not _bone_target(ev, d):
            continue
        fx = d.radiotherapy.fractionation
        if fx is None or fx.fractions > 1:
            out.append(d)
    return out


def _bone_rt(ev: Evaluation, _: str | None) -> Findings:
    found: list[Evidence] = []
    for d in bone_radiotherapy_drafts(ev):
        fx = d.radiotherapy.fractionation if d.radiotherapy else None
        if fx is None:
            text = f"{_draft_line(d, 'draft radiotherapy order')}: fractionation could not be read from the order"
            found.append(_draft_evidence(d, text, draft=d.name, fractionation="fractionation not readable"))
        else:
            text = f"{_draft_line(d, 'draft radiotherapy order')}: {fx.describe()} (read from {fx.source})"
            found.append(_draft_evidence(d, text, draft=d.name, fractionation=fx.describe()))
    if not found:
        return None
    site = ev.facts.sites.get("bone")
    if site is not None:
        found.append(Evidence(f"bone metastasis on record (first recorded {fmt_date(site.first)})", tuple(site.refs)))
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    if pain is not None:
        found.append(Evidence(f"pain {pain.value:g}/10 on {fmt_date(pain.when)}", (pain.ref,)))
    return found


def _fractionation_readable(ev: Evaluation, _: str | None) -> Findings:
    drafts = [d for d in bone_radiotherapy_drafts(ev) if d.radiotherapy and d.radiotherapy.fractionation]
    return [] if drafts else None


def _no_ccf(ev: Evaluation, _: str | None) -> Findings:
    """Single 8 Gy is for uncomplicated bone pain: not with cord compression, a fracture or bone surgery."""
    if ev.unreadable_types & {"Condition", "Procedure"}:
        return None
    facts = ev.facts
    for name in ("cord-compression", "pathological-fracture", "long-bone-fracture", "vertebral-fracture",
                 "neuro-deficit"):
        if facts.has_complication(name):
            return None
    if any(facts.treatment(t) for t in _SURGERY):
        return None
    return [Evidence("no spinal cord compression, pathological fracture or bone surgery on record")]


# -- brain, renal, bowel ----------------------------------------------------------------------------------
def _no_seizure(ev: Evaluation, _: str | None) -> Findings:
    if "Condition" in ev.unreadable_types or ev.facts.has_complication("seizure"):
        return None
    return [Evidence("no seizure on record")]


def _renal_line(ev: Evaluation) -> str:
    """The latest eGFR (or creatinine clearance) of the renal window, with its date and resource."""
    window = T.RENAL_WINDOW
    found = [m for m in (ev.facts.latest("egfr", window), ev.facts.latest("creatinine-clearance", window)) if m]
    if not found:
        return f"no eGFR or creatinine clearance in the last {window.days} days"
    m = max(found, key=lambda x: x.when)
    unit = f" {m.unit}" if m.unit else ""
    return f"eGFR {m.value:g}{unit} on {fmt_date(m.when)} ({m.ref})"


def _bone_agent_priority(ev: Evaluation) -> str:
    orders = _orders(ev)
    if orders is None or ev.facts.renal_impairment_severe() is None:
        return "routine"
    return "urgent" if any(d.has_ingredient(ZOLEDRONIC_ACID) for d in orders.judged) else "routine"


def _radiotherapy_priority(ev: Evaluation) -> str:
    drafts = bone_radiotherapy_drafts(ev)
    readable = any(d.radiotherapy and d.radiotherapy.fractionation for d in drafts)
    return "urgent" if readable else "routine"


def _judged_names(ev: Evaluation) -> str:
    orders = _orders(ev)
    return ", ".join(d.name for d in orders.judged) if orders and orders.judged else "the draft order"


# -- the names PlanDefinition-order-time uses, in the shape of the clinical tables (app.clinical.predicates) ------
# Documented in plandefinitions/Library-mbc-cds-predicates.json with the clinical ones.
ORDER_PREDICATES: dict[str, Named] = {
    "DraftDrug": Named(_draft_drug, _DRUG_ARGS),
    "DraftDrugTolerated": Named(_draft_drug_tolerated, _DRUG_ARGS),
    "NoLaxative": Named(_no_laxative),
    "DraftAllergen": Named(_draft_allergen),
    "BoneRadiotherapyMultiFraction": Named(_bone_rt),
    "FractionationReadable": Named(_fractionation_readable),
    "NoCordCompressionFractureOrSurgery": Named(_no_ccf),
    "NoSeizureOnRecord": Named(_no_seizure),
}

ORDER_PRIORITIES: dict[str, Callable[[Evaluation], str]] = {
    "BoneAgentPriority": _bone_agent_priority,
    "RadiotherapyFractionationPriority": _radiotherapy_priority,
}

# Card template keys: the order engine fills them per card from the DraftEvidence of the drafts it names; these
# are what a card shows when no draft gave one.
ORDER_CARD_VALUES: dict[str, Callable[[Evaluation], str]] = {
    "draft": _judged_names,
    "allergy": lambda ev: "a recorded allergy",
    "fractionation": lambda ev: "more than one fraction",
    "egfr": _renal_line,
}
