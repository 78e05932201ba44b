"""Dose and fractionation of a draft radiotherapy ServiceRequest, read and written.

Read, in order of trust:
1. The HL7 CodeX Radiation Therapy IG (STU1) ServiceRequest profiles (source: github.com/HL7/codex-radiation-therapy,
   input/fsh/SD_Extensions.fsh, SD_RadiotherapyCoursePrescription.fsh, SD_RadiotherapyPhasePrescription.fsh):
   - Phase prescription: extension `codexrt-radiotherapy-fractions-prescribed` (valuePositiveInt) plus one
     `codexrt-radiotherapy-dose-prescribed-to-volume` per volume with sub-extensions `fractionDose` and
     `totalDose` (valueQuantity in UCUM cGy).
   - Course prescription: `codexrt-radiotherapy-dose-prescribed-to-volume` with `totalDose` and `fractions`
     (valuePositiveInt) per volume.
   Earlier IG drafts named the sub-extensions `fractionDosePrescribed` / `totalDosePrescribed` /
   `fractionsPrescribed`; those are read too.
2. Structured fields: `quantityRatio` (total dose / fractions) or `quantityQuantity` counting fractions.
3. Free text (`code.text`, `orderDetail[].text`, `patientInstruction`, `note[].text`) in the forms
   "20 Gy in 5 fractions", "8Gy x1", "4 x 5 Gy", "30 Gy / 10 fractions", "single 8 Gy fraction".
Two readings that disagree make the order unreadable: a wrong suggestion is worse than none.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.clinical import thresholds as T

CODEX = "http://hl7.org/fhir/us/codex-radiation-therapy/StructureDefinition/"
EXT_FRACTIONS = CODEX + "codexrt-radiotherapy-fractions-prescribed"
EXT_DOSE_TO_VOLUME = CODEX + "codexrt-radiotherapy-dose-prescribed-to-volume"
PROFILE_COURSE = CODEX + "codexrt-radiotherapy-course-prescription"
PROFILE_PHASE = CODEX + "codexrt-radiotherapy-phase-prescription"
_PROFILES = (PROFILE_COURSE, PROFILE_PHASE, CODEX + "codexrt-radiotheraphy-phase-prescription")
_REQUEST_CODES = frozenset({"radiotherapy-course-prescription", "radiotherapy-phase-prescription",
                            "teleradiotherapy-phase-prescription"})
UCUM = "http://unitsofmeasure.org"
# Terminology concepts (value set ids) whose codes name a radiotherapy order.
RADIOTHERAPY_CONCEPTS = frozenset({"service-radiotherapy", "treatment-radiotherapy", "treatment-radiotherapy-bone",
                                   "treatment-radiotherapy-brain", "treatment-radiotherapy-stereotactic"})
_STEREOTACTIC = re.compile(r"\b(stereotactic|SBRT|SABR|SRS|radiosurgery)\b", re.I)


def is_stereotactic(resource: dict[str, Any], concepts: set[str]) -> bool:
    """Stereotactic radiotherapy is prescribed in its own fractionations, not the single 8 Gy of palliation."""
    return "treatment-radiotherapy-stereotactic" in concepts or any(
        _STEREOTACTIC.search(t) for t in _texts(resource) if t)

_FRACTION_DOSE_KEYS = ("fractionDose", "fractionDosePrescribed")
_TOTAL_DOSE_KEYS = ("totalDose", "totalDosePrescribed")
_FRACTIONS_KEYS = ("fractions", "fractionsPrescribed")

_NUM = r"(\d{1,4}(?:[.,]\d{1,2})?)"
_GY = r"\s*(c?gy)\b"
_FRACTION_WORD = r"(?:fractions?|fx|#)"
# "20 Gy in 5 fractions", "20Gy/5#", "30 Gy / 10 fx"
_TOTAL_IN_N = re.compile(_NUM + _GY + r"\s*(?:in|/|over)\s*(\d{1,2})\s*" + _FRACTION_WORD, re.I)
# "8 Gy x 1", "8Gy x1", "4 Gy × 5" (dose per fraction times number)
_DOSE_X_N = re.compile(_NUM + _GY + r"\s*[x×*]\s*(\d{1,2})\b", re.I)
# "4 x 5 Gy", "5 × 4Gy" (number times dose per fraction)
_N_X_DOSE = re.compile(r"\b(\d{1,2})\s*[x×*]\s*" + _NUM + _GY, re.I)
# "single 8 Gy fraction", "8 Gy single fraction", "single fraction of 8 Gy"
_SINGLE = re.compile(r"\bsingle\s+(?:fraction\s+(?:of\s+)?)?" + _NUM + _GY + r"|" + _NUM + _GY +
                     r"\s+(?:in\s+)?(?:a\s+)?single\s+fraction", re.I)


@dataclass(frozen=True, slots=True)
class Fractionation:
    fractions: int
    total_gy: float | None
    source: str            # "CodeX extensions", "structured quantity", "text"

    def describe(self) -> str:
        if self.total_gy is not None:
            return f"{self.total_gy:g} Gy in {self.fractions} fraction{'s' if self.fractions != 1 else ''}"
        return f"{self.fractions} fractions"


def _gy(quantity: Any) -> float | None:
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "cGy").strip().lower()
    if unit == "cgy":
        return float(value) / 100
    if unit == "gy":
        return float(value)
    return None


def _pos_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _sub(ext: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any] | None:
    for item in ext.get("extension") or ():
        if isinstance(item, dict) and item.get("url") in names:
            return item
    return None


def _from_codex(resource: dict[str, Any]) -> Fractionation | None | bool:
    """A reading from the CodeX extensions; None when there are none; False when they are contradictory."""
    exts = [e for e in resource.get("extension") or () if isinstance(e, dict)]
    fractions = next((_pos_int(e.get("valuePositiveInt")) for e in exts if e.get("url") == EXT_FRACTIONS), None)
    volumes = [e for e in exts if e.get("url") == EXT_DOSE_TO_VOLUME]
    if fractions is None and not volumes:
        return None
    readings: set[tuple[int, float | None, float | None]] = set()
    for vol in volumes:
        fd = _sub(vol, _FRACTION_DOSE_KEYS)
        td = _sub(vol, _TOTAL_DOSE_KEYS)
        fr = _sub(vol, _FRACTIONS_KEYS)
        per = _gy(fd.get("valueQuantity")) if fd else None
        total = _gy(td.get("valueQuantity")) if td else None
        n = (_pos_int(fr.get("valuePositiveInt")) if fr else None) or fractions
        if n is None and per and total:
            ratio = total / per
            n = round(ratio) if abs(ratio - round(ratio)) < 1e-6 else None
        if n is None:
            continue
        if per is None and total is not None:
            per = total / n
        if total is None and per is not None:
            total = per * n
        readings.add((n, round(per, 4) if per else None, round(total, 4) if total else None))
    if not readings and fractions is not None:
        return Fractionation(fractions, None, "CodeX extensions")
    if len(readings) != 1:
        # Volumes prescribed differently (or no usable volume): not one fractionation to change.
        return False if readings else None
    n, _, total = readings.pop()
    return Fractionation(n, total, "CodeX extensions")


def _texts(resource: dict[str, Any]) -> Iterable[str]:
    code = resource.get("code")
    if isinstance(code, dict):
        yield str(code.get("text") or "")
        for c in code.get("coding") or ():
            if isinstance(c, dict):
                yield str(c.get("display") or "")
    for detail in resource.get("orderDetail") or ():
        if isinstance(detail, dict):
            yield str(detail.get("text") or "")
            for c in detail.get("coding") or ():
                if isinstance(c, dict):
                    yield str(c.get("display") or "")
    yield str(resource.get("patientInstruction") or "")
    for note in resource.get("note") or ():
        if isinstance(note, dict):
            yield str(note.get("text") or "")


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def _dose(value: str, unit: str) -> float:
    return _num(value) / 100 if unit.lower() == "cgy" else _num(value)


def parse_fractionation_text(text: str) -> Fractionation | None:
    """One fractionation from free text, or None when there is none or more than one (ambiguous)."""
    found: set[tuple[int, float, float]] = set()
    for m in _TOTAL_IN_N.finditer(text):
        total, n = _dose(m.group(1), m.group(2)), int(m.group(3))
        if n > 0:
            found.add((n, round(total / n, 4), round(total, 4)))
    for m in _DOSE_X_N.finditer(text):
        per, n = _dose(m.group(1), m.group(2)), int(m.group(3))
        if n > 0:
            found.add((n, round(per, 4), round(per * n, 4)))
    for m in _N_X_DOSE.finditer(text):
        n, per = int(m.group(1)), _dose(m.group(2), m.group(3))
        if n > 0:
            found.add((n, round(per, 4), round(per * n, 4)))
    for m in _SINGLE.finditer(text):
        value, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        dose = _dose(value, unit)
        found.add((1, round(dose, 4), round(dose, 4)))
    if len(found) != 1:
        return None
    n, per, total = found.pop()
    if not (0 < per <= T.RADIOTHERAPY_MAX_GY_PER_FRACTION and 0 < total <= T.RADIOTHERAPY_MAX_TOTAL_GY):
        return None  # not a plausible palliative prescription: a misread, not a number to act on
    return Fractionation(n, total, "text")


_FRACTION_UNITS = frozenset({"fraction", "fractions", "fx", "{fraction}", "{fractions}", "#"})


def _from_quantity(resource: dict[str, Any]) -> Fractionation | None:
    quantity = resource.get("quantityQuantity")
    if isinstance(quantity, dict):
        # A count of fractions ({"value": 5, "unit": "fractions"}); a dose in Gy alone says nothing of them.
        unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
        n = quantity.get("value")
        if unit in _FRACTION_UNITS and isinstance(n, int | float) and not isinstance(n, bool) \
                and n > 0 and float(n).is_integer():
            return Fractionation(int(n), None, "structured quantity")
    ratio = resource.get("quantityRatio")
    if isinstance(ratio, dict):
        total = _gy(ratio.get("numerator"))
        denom = ratio.get("denominator")
        n = denom.get("value") if isinstance(denom, dict) else None
        if total is not None and isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return Fractionation(n, total, "structured quantity")
    return None


def read_fractionation(resource: dict[str, Any]) -> Fractionation | None:
    """The prescribed fractionation, or None when it cannot be read safely."""
    codex = _from_codex(resource)
    if codex is False:
        return None
    readings = [r for r in (codex, _from_quantity(resource)) if isinstance(r, Fractionation)]
    text_readings = {f for t in _texts(resource) if t and (f := parse_fractionation_text(t)) is not None}
    if not readings:
        readings = list(text_readings)
    if not readings:
        return None
    first = readings[0]
    if any(r.fractions != first.fractions for r in readings[1:]):
        return None
    return first


def is_radiotherapy_request(resource: dict[str, Any], concepts: set[str]) -> bool:
    """A ServiceRequest for radiotherapy: CodeX profile or request code, a radiotherapy service code, or the word
    in its code text."""
    if resource.get("resourceType") != "ServiceRequest":
        return False
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    if isinstance(profiles, list) and any(isinstance(p, str) and p.split("|")[0] in _PROFILES for p in profiles):
        return True
    code = resource.get("code")
    if isinstance(code, dict):
        for c in code.get("coding") or ():
            if isinstance(c, dict) and c.get("code") in _REQUEST_CODES:
                return True
    if concepts & RADIOTHERAPY_CONCEPTS:
        return True
    text = " ".join(t for t in _texts(resource) if t)
    return bool(re.search(r"\b(radiotherapy|radiation therapy|palliative radiation|teletherapy|SBRT|SABR)\b",
                          text, re.I))


def _is_course(resource: dict[str, Any]) -> bool:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return isinstance(profiles, list) and any(isinstance(p, str) and p.split("|")[0] == PROFILE_COURSE
                                              for p in profiles)


def with_fractionation(resource: dict[str, Any], per_fraction_cgy: float, fractions: int) -> dict[str, Any]:
    """A copy of the draft prescribing `per_fraction_cgy` x `fractions`, written as CodeX extensions the way its
    profile wants them (Course: `totalDose` and `fractions` per volume; Phase or any other order: the
    `codexrt-radiotherapy-fractions-prescribed` extension plus `fractionDose` and `totalDose` per volume). Every
    other field is kept; each volume keeps its reference; free-text or structured fractionation that would now
    contradict the extensions is rewritten to the same prescription."""
    out = copy.deepcopy(resource)
    total = per_fraction_cgy * fractions
    course = _is_course(out)
    exts = [e for e in out.get("extension") or () if isinstance(e, dict)]
    volumes = [e for e in exts if e.get("url") == EXT_DOSE_TO_VOLUME]
    new_exts = [e for e in exts if e.get("url") not in (EXT_FRACTIONS, EXT_DOSE_TO_VOLUME)]
    if not course:
        new_exts.append({"url": EXT_FRACTIONS, "valuePositiveInt": fractions})
    for vol in volumes:
        parts = [p for p in vol.get("extension") or () if isinstance(p, dict)
                 and p.get("url") not in _FRACTION_DOSE_KEYS + _TOTAL_DOSE_KEYS + _FRACTIONS_KEYS]
        if course:
            parts += [{"url": "totalDose", "valueQuantity": _cgy(total)},
                      {"url": "fractions", "valuePositiveInt": fractions}]
        else:
            parts += [{"url": "fractionDose", "valueQuantity": _cgy(per_fraction_cgy)},
                      {"url": "totalDose", "valueQuantity": _cgy(total)}]
        new_exts.append({**vol, "extension": parts})
    if course and not volumes:
        # A course prescription carries its fractions per volume; with no volume to attach them to, the plain
        # fractions extension still says how many (and the text below the dose).
        new_exts.append({"url": EXT_FRACTIONS, "valuePositiveInt": fractions})
    out["extension"] = new_exts
    text = f"{per_fraction_cgy / 100:g} Gy in {fractions} fraction{'s' if fractions != 1 else ''}"
    if "quantityRatio" in out:
        out["quantityRatio"] = {"numerator": _cgy(total), "denominator": {"value": fractions}}
    quantity = out.get("quantityQuantity")
    if isinstance(quantity, dict) and str(quantity.get("code") or quantity.get("unit") or "").strip().lower() \
            in _FRACTION_UNITS:
        quantity["value"] = fractions
    details = out.get("orderDetail")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and isinstance(detail.get("text"), str) \
                    and parse_fractionation_text(detail["text"]):
                detail["text"] = _replace_fractionation(detail["text"], text)
    if not volumes:
        # No volume carries the dose: say it in words where a reader of the order will look.
        out["orderDetail"] = [*(details if isinstance(details, list) else []), {"text": text}]
    if isinstance(out.get("patientInstruction"), str) and parse_fractionation_text(out["patientInstruction"]):
        out["patientInstruction"] = text
    code = out.get("code")
    if isinstance(code, dict) and isinstance(code.get("text"), str) and parse_fractionation_text(code["text"]):
        code["text"] = _replace_fractionation(code["text"], text)
    notes = out.get("note")
    if isinstance(notes, list):
        for note in notes:
            if isinstance(note, dict) and isinstance(note.get("text"), str) and parse_fractionation_text(note["text"]):
                note["text"] = _replace_fractionation(note["text"], text)
    return out


def _replace_fractionation(text: str, new: str) -> str:
    for pattern in (_TOTAL_IN_N, _DOSE_X_N, _N_X_DOSE, _SINGLE):
        text = pattern.sub(new, text)
    return text


def _cgy(value: float) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": "cGy", "system": UCUM, "code": "cGy"}
