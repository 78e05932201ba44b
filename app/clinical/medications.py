"""Classifies one medication (MedicationRequest / MedicationStatement / Medication as raw JSON) into drug classes.

Used by the facts pass and by the order hooks for draft orders, so both see the same classes, ingredients and
"could not classify" answers. A medication is classified from, in order: the codings (RxNorm ingredient and product
codes, via the terminology), the ingredients of a referenced Medication, and whole-word names (ingredient, brand and
free-text names) in the text and coding displays. Nothing here raises on malformed input.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from terminology.fhir_json import CodeableConceptJson, JsonObject, JsonValue

DRUG_PREFIX = "drug-"
# Stimulant laxatives (rules v2 order-stimulant-laxative-obstruction): by ingredient, on top of "laxative".
STIMULANT_LAXATIVES = frozenset({"senna", "bisacodyl", "sodium picosulfate"})
# Classifications remembered per terminology (site-local codes make another instance), bounded.
_MEMO: weakref.WeakKeyDictionary[MedicationTerminology, dict[bytes, MedicationClass]] = weakref.WeakKeyDictionary()
_MEMO_SIZE = 4096
_MEMO_LONGEST_KEY = 4096


class MedicationTerminology(Protocol):
    def concepts_of_medication(self, cc: CodeableConceptJson | None) -> set[str]: ...
    def ingredients_of_text(self, text: JsonValue) -> set[str]: ...
    def ingredients_of_code(self, system: JsonValue, code: JsonValue) -> frozenset[str]: ...
    def recognises_medication_text(self, text: JsonValue) -> bool: ...


@dataclass(frozen=True, slots=True)
class MedicationClass:
    name: str
    classes: frozenset[str]
    ingredients: frozenset[str]
    classified: bool


def _display(cc: JsonValue) -> str:
    if not isinstance(cc, dict):
        return ""
    text = cc.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    for coding in cc.get("coding") or ():
        display = coding.get("display") if isinstance(coding, dict) else None
        if isinstance(display, str) and display.strip():
            return display.strip()
    return ""


def resolve_medication(resource: Mapping[str, Any], contained: Mapping[str, dict[str, Any]] | None = None,
                       bundle_medications: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The Medication a request / statement points to (contained ``#id`` or ``Medication/id``), or None."""
    ref = resource.get("medicationReference")
    if not isinstance(ref, dict):
        return None
    target = ref.get("reference")
    if not isinstance(target, str) or not target:
        return None
    if target.startswith("#"):
        if contained and target in contained:
            return contained[target]
        for item in resource.get("contained") or ():
            if isinstance(item, dict) and item.get("resourceType") == "Medication" and f"#{item.get('id')}" == target:
                return item
        return None
    if bundle_medications:
        key = target if target.startswith("Medication/") else f"Medication/{target.rsplit('/', 1)[-1]}"
        hit = bundle_medications.get(target) or bundle_medications.get(key)
        if hit is not None:
            return hit
        # Absolute URLs end in Medication/<id>.
        tail = target.rsplit("/", 2)
        if len(tail) == 3 and tail[1] == "Medication":
            return bundle_medications.get(f"Medication/{tail[2]}")
    return None


def _codeables(resource: Mapping[str, Any], medication: Mapping[str, Any] | None) -> list[Any]:
    out: list[Any] = []
    if resource.get("resourceType") == "Medication":
        medication = resource
    else:
        out.append(resource.get("medicationCodeableConcept"))
    if medication is not None:
        out.append(medication.get("code"))
        for ing in medication.get("ingredient") or ():
            if isinstance(ing, dict):
                out.append(ing.get("itemCodeableConcept"))
    return [cc for cc in out if isinstance(cc, dict)]


def classify_medication(resource: JsonObject, terminology: MedicationTerminology,
                        contained: Mapping[str, dict[str, Any]] | None = None,
                        bundle_medications: Mapping[str, dict[str, Any]] | None = None) -> MedicationClass:
    """Drug classes and ingredients of one medication resource; ``classified`` False when no class was found."""
    if not isinstance(resource, dict):
        return MedicationClass("", frozenset(), frozenset(), False)
    medication = None if resource.get("resourceType") == "Medication" else resolve_medication(
        resource, contained, bundle_medications)
    codeables = _codeables(resource, medication)
    ref = resource.get("medicationReference")
    ref_display = ref["display"] if isinstance(ref, dict) and isinstance(ref.get("display"), str) \
        and ref["display"].strip() else ""
    # The answer depends on these codes and texts only, and the same drugs recur from patient to patient.
    try:
        key: bytes | None = orjson.dumps([codeables, ref_display])
    except TypeError:  # a value orjson cannot write (an integer over 64 bits): classified, not remembered
        key = None
    memo = _MEMO.setdefault(terminology, {})
    found = memo.get(key) if key is not None else None
    if found is None:
        found = _classify(codeables, ref_display, terminology)
        if key is not None and len(key) <= _MEMO_LONGEST_KEY:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = found
    return found


def _classify(codeables: list[dict[str, Any]], ref_display: str,
              terminology: MedicationTerminology) -> MedicationClass:
    concepts: set[str] = set()
    ingredients: set[str] = set()
    name = ""
    known = False  # a medicine the name table knows outside the classes (letrozole, a topical steroid ...)
    for cc in codeables:
        concepts |= terminology.concepts_of_medication(cc)
        texts = [cc.get("text"), *(c.get("display") for c in cc.get("coding") or () if isinstance(c, dict))]
        known = known or any(terminology.recognises_medication_text(t) for t in texts)
        if not name:
            name = _display(cc)
        for coding in cc.get("coding") or ():
            if isinstance(coding, dict):
                ingredients |= terminology.ingredients_of_code(coding.get("system"), coding.get("code"))
                ingredients |= terminology.ingredients_of_text(coding.get("display"))
        ingredients |= terminology.ingredients_of_text(cc.get("text"))
    if ref_display:
        # A reference that cannot be resolved may still name the drug ("MST Continus 10 mg").
        concepts |= terminology.concepts_of_medication({"text": ref_display})
        known = known or terminology.recognises_medication_text(ref_display)
        ingredients |= terminology.ingredients_of_text(ref_display)
        name = name or ref_display.strip()
    classes = {c.removeprefix(DRUG_PREFIX) for c in concepts if c.startswith(DRUG_PREFIX)}
    if ingredients & STIMULANT_LAXATIVES:
        classes.add("stimulant-laxative")
    if not name:
        name = _code_label(codeables)
    return MedicationClass(name, frozenset(classes), frozenset(ingredients), bool(classes) or known)


def _code_label(codeables: list[dict[str, Any]]) -> str:
    """'RxNorm 12345' for a medication that has codes but no text or display."""
    for cc in codeables:
        for coding in cc.get("coding") or ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = str(coding.get("system") or "")
                short = ("RxNorm" if "rxnorm" in system else "SNOMED CT" if "snomed" in system
                         else (system.rsplit("/", 1)[-1] or "code"))
                return f"{short} {coding['code']}"
    return ""
