"""What is on record: metastatic sites, complications, drugs, services, treatments, allergies, renal function."""

from __future__ import annotations

from app.clinical import thresholds as T
from app.clinical.evaluation import MEDICATION_TYPES, Evaluation, Evidence
from app.clinical.facts import COMPLICATIONS, DRUG_CLASSES, SERVICES, SITE_LABELS, TREATMENT_LABELS, TREATMENTS
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import Findings, any_of, complication_on_record, dated_evidence, site_evidence

SITE_ARGS = frozenset(set(SITE_LABELS) | {"lung-or-pleura"})


def has_site(ev: Evaluation, arg: str | None) -> Findings:
    if arg == "lung-or-pleura":
        return any_of(site_evidence(ev, "lung"), site_evidence(ev, "pleura"))
    return any_of(site_evidence(ev, arg or ""))


COMPLICATION_ARGS = frozenset(set(COMPLICATIONS) | {"fracture"})


def has_complication(ev: Evaluation, arg: str | None) -> Findings:
    name = "pathological-fracture" if arg == "fracture" else (arg or "")
    return any_of(complication_on_record(ev, name))


DRUG_ARGS = frozenset(set(DRUG_CLASSES) | {"opioid"})


def drug_evidence(ev: Evaluation, cls: str) -> Evidence | None:
    classes = ("weak-opioid", "strong-opioid") if cls == "opioid" else (cls,)
    uses = [u for c in classes for u in ev.facts.drugs.get(c, [])]
    if not uses:
        return None
    names = ", ".join(dict.fromkeys(u.name for u in uses))
    return Evidence(f"active {cls.replace('-', ' ')}: {names}", tuple(u.ref for u in uses))


def on_drug_class(ev: Evaluation, arg: str | None) -> Findings:
    return any_of(drug_evidence(ev, arg or ""))


SERVICE_ARGS = frozenset(SERVICES)


def has_service(ev: Evaluation, arg: str | None) -> Findings:
    names = ("palliative-care", "hospice") if arg == "palliative-care" else (arg or "",)
    items = [i for n in names for i in ev.facts.services.get(n, [])]
    return [dated_evidence(f"{(arg or '').replace('-', ' ')} already on record", items)] if items else None


TREATMENT_ARGS = frozenset(set(TREATMENTS) | {"brain-local", "radiotherapy-bone-recent"})


def has_treatment(ev: Evaluation, arg: str | None) -> Findings:
    names: tuple[str, ...] = (arg or "",)
    since = None
    if arg == "brain-local":
        names = ("radiotherapy-brain", "radiotherapy-stereotactic", "neurosurgery")
    elif arg == "radiotherapy-bone-recent":
        names, since = ("radiotherapy-bone",), ev.now - T.BONE_RADIOTHERAPY_RECENT
    items = [i for n in names for i in ev.facts.treatment(n, since)]
    if not items:
        return None
    labels = ", ".join(dict.fromkeys(TREATMENT_LABELS[n] for n in names if ev.facts.treatment(n, since)))
    return [dated_evidence(f"{labels} on record", items)]


def allergy_to_class(ev: Evaluation, arg: str | None) -> Findings:
    allergy = ev.facts.allergy_to(None, "strong-opioid" if arg == "opioid" else arg)
    if allergy is None:
        return None
    reaction = f", reaction: {allergy.reaction}" if allergy.reaction else ""
    return [Evidence(f"recorded allergy / intolerance: {allergy.label}{reaction}", (allergy.ref,))]


def renal_impairment_severe(ev: Evaluation, _: str | None) -> Findings:
    m = ev.facts.renal_impairment_severe()
    if m is None:
        return None
    return [Evidence(f"eGFR {m.value:g} {m.unit} on {fmt_date(m.when)} (below {T.RENAL_SEVERE_BELOW:g} in the last "
                     f"{T.RENAL_WINDOW.days} days)", (m.ref,))]


def medications_complete(ev: Evaluation, _: str | None) -> Findings:
    if ev.unreadable_types & MEDICATION_TYPES or not ev.facts.medications_complete:
        return None
    return []
