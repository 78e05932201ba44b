"""Checks a draft medication against the patient's record before the service offers it (rules v2).

A draft is withheld when the patient has a recorded allergy / intolerance to its ingredient or class, or when
severe renal impairment (PatientFacts.renal_impairment_severe) makes the drug unsafe to draft without specialist
advice (morphine: metabolites accumulate; zoledronic acid: nephrotoxic, product labelling). The reason
is returned as text for the card, with the resources it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.clinical.facts import PatientFacts
from app.clinical.fhirtime import fmt_date
from app.clinical.medications import MedicationTerminology, classify_medication
from app.clinical.thresholds import RENAL_SEVERE_BELOW
from terminology.fhir_json import JsonObject

# Ingredients whose draft severe renal impairment blocks (clinical rules v2 section 2 / 5b).
RENAL_BLOCKED = {
    "morphine": "morphine metabolites accumulate in severe renal impairment; seek specialist palliative advice on "
                "the opioid and dose",
    "zoledronic acid": f"zoledronic acid is not recommended below a creatinine clearance of {RENAL_SEVERE_BELOW:g} "
                       "mL/min (product labelling); check renal function and seek advice",
}


@dataclass(frozen=True, slots=True)
class Withheld:
    text: str
    refs: tuple[str, ...]


def draft_blockers(facts: PatientFacts, draft: JsonObject, terminology: MedicationTerminology) -> list[Withheld]:
    """Why this draft must not be offered to this patient (empty when nothing blocks it)."""
    if draft.get("resourceType") != "MedicationRequest":
        return []
    med = classify_medication(draft, terminology)
    name = med.name or "this medication"
    out: list[Withheld] = []
    allergy = next((a for a in (facts.allergy_to(i, None) for i in sorted(med.ingredients)) if a), None)
    if allergy is None:
        allergy = next((a for a in (facts.allergy_to(None, c) for c in sorted(med.classes)) if a), None)
    if allergy is not None:
        details = ", ".join(x for x in (allergy.reaction, allergy.criticality and f"criticality {allergy.criticality}",
                                        allergy.when and f"recorded {fmt_date(allergy.when)}") if x)
        out.append(Withheld(f"{name} not drafted: allergy / intolerance to {allergy.label} on record"
                            + (f" ({details})" if details else "") + "; the prescriber chooses an alternative",
                            (allergy.ref,)))
    renal = facts.renal_impairment_severe()
    if renal is not None:
        for ingredient in sorted(med.ingredients & RENAL_BLOCKED.keys()):
            unit = f" {renal.unit}" if renal.unit else ""
            out.append(Withheld(f"{ingredient} not drafted: severe renal impairment (eGFR / creatinine clearance "
                                f"{renal.value:g}{unit} on {fmt_date(renal.when)}): {RENAL_BLOCKED[ingredient]}",
                                (renal.ref,)))
    return out
