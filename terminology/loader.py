"""Loads the FHIR R4 ValueSets in ``terminology/valuesets`` and answers code lookups.

Everything expensive happens once, at start-up (:func:`get_terminology`): every ValueSet is validated with
``fhir.resources`` (R4B models), ICD-10-CM ``is-a`` filters are expanded through ``simple_icd_10_cm`` and a dict
``(system, normalised code) -> frozenset(concept ids)`` is built. The lookup methods used on the request path
(:meth:`Terminology.concepts`, :meth:`Terminology.concepts_of_codeable`, :meth:`Terminology.concepts_of_text`) are
plain dict/set operations on raw JSON and never raise on malformed input.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.valueset import ValueSet
from pydantic import ValidationError

from terminology import icd10cm as icd

__all__ = [
    "BASE",
    "EXT_CODE_SOURCE",
    "EXT_EXCLUDE_TEXT",
    "EXT_MATCH_NAME",
    "ICD10CM",
    "ICDO3",
    "LOCAL",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "Terminology",
    "TerminologyError",
    "get_terminology",
    "normalise_code",
]

BASE = "http://mbc-cds.example.org/fhir"
VALUESET_BASE = f"{BASE}/ValueSet/"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
LOCAL = f"{BASE}/CodeSystem/mbc-cds-local"

EXT_MATCH_NAME = f"{BASE}/StructureDefinition/match-ingredient-name"
EXT_EXCLUDE_TEXT = f"{BASE}/StructureDefinition/exclude-text-pattern"
EXT_CODE_SOURCE = f"{BASE}/StructureDefinition/code-source"

_PACKAGE_DIR = Path(__file__).resolve().parent
_EMPTY: frozenset[str] = frozenset()

# Spellings of the same system seen on the wire (https, trailing slash). Looked up only when the exact system
# string is not one of ours, so the common case costs one dict lookup.
_SYSTEM_ALIASES = {
    "https://snomed.info/sct": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "https://loinc.org": LOINC,
    "http://loinc.org/": LOINC,
    "https://hl7.org/fhir/sid/icd-10-cm": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "https://www.nlm.nih.gov/research/umls/rxnorm": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
}


class TerminologyError(RuntimeError):
    """A ValueSet file is invalid or inconsistent (raised at start-up, naming the file)."""


def normalise_code(system: str, code: str) -> str:
    """ICD-10-CM: no dot, upper case (``c50.911`` -> ``C50911``); other systems: surrounding whitespace removed."""
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    return code


def _icd_dotted(code: str) -> str:
    """A normalised ICD-10-CM code in the dotted form simple_icd_10_cm accepts (``C50911`` -> ``C50.911``)."""
    code = code.strip().upper()
    if "." in code or len(code) <= 3:
        return code
    return code[:3] + "." + code[3:]


def _icd_valid(code: str) -> bool:
    try:
        return bool(icd.is_valid_item(_icd_dotted(code)))
    except Exception:  # the library raises on odd input; treat it as invalid
        return False


def _ext_value(resource: Mapping[str, Any], url: str, key: str) -> Any:
    for ext in resource.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext.get(key)
    return None


class Terminology:
    """The ValueSets of the package, indexed for O(1) lookups.

    ``Terminology()`` loads the package data; ``Terminology(directory)`` loads another directory of ValueSet JSON
    (used by tests). Use :func:`get_terminology` for the shared, cached instance.
    """

    def __init__(self, directory: str | Path | None = None, *, codesystem_dir: str | Path | None = None) -> None:
        vs_dir = Path(directory) if directory is not None else _PACKAGE_DIR / "valuesets"
        if codesystem_dir is None and directory is None:
            codesystem_dir = _PACKAGE_DIR / "codesystems"
        self._valuesets: dict[str, dict[str, Any]] = {}
        self._codesystems: list[dict[str, Any]] = []
        index: dict[tuple[str, str], set[str]] = {}
        codes: dict[str, set[tuple[str, str]]] = {}
        first: dict[str, list[dict[str, str]]] = {}
        displays: dict[tuple[str, str], str] = {}
        names: dict[str, set[str]] = {}
        # Normalised name / (system, code) -> canonical lower-case ingredient name (the code's display).
        name_ingredient: dict[str, str] = {}
        code_ingredient: dict[tuple[str, str], str] = {}
        exclusions: dict[str, re.Pattern[str]] = {}

        files = sorted(vs_dir.glob("*.json"))
        if not files:
            raise TerminologyError(f"no ValueSet JSON found in {vs_dir}")
        for path in files:
            data = self._read_valueset(path)
            cid = data["id"]
            self._valuesets[cid] = data
            cset: set[tuple[str, str]] = set()
            ordered: list[dict[str, str]] = []
            name_match = _ext_value(data, EXT_MATCH_NAME, "valueBoolean") is True
            exclude = _ext_value(data, EXT_EXCLUDE_TEXT, "valueString")
            if exclude is not None:
                try:
                    exclusions[cid] = re.compile(exclude)
                except (re.error, TypeError) as exc:
                    raise TerminologyError(f"{path.name}: bad exclude-text-pattern: {exc}") from exc
            for include in data["compose"]["include"]:
                system = include["system"]
                for concept in include.get("concept") or ():
                    raw = concept["code"]
                    if system == ICD10CM and not _icd_valid(raw):
                        raise TerminologyError(f"{path.name}: ICD-10-CM code {raw!r} not in simple_icd_10_cm")
                    code = normalise_code(system, raw)
                    cset.add((system, code))
                    display = concept.get("display") or ""
                    displays.setdefault((system, code), display)
                    ordered.append({"system": system, "code": raw, "display": display})
                    if name_match:
                        canonical = display.strip().lower()
                        if canonical:
                            code_ingredient.setdefault((system, code), canonical)
                        for name in [display, *(d.get("value") for d in concept.get("designation") or ())]:
                            if isinstance(name, str) and name.strip():
                                names.setdefault(name.strip().lower(), set()).add(cid)
                                if canonical:
                                    name_ingredient.setdefault(name.strip().lower(), canonical)
                for flt in include.get("filter") or ():
                    value = flt.get("value", "")
                    if system != ICD10CM or flt.get("property") != "concept" or flt.get("op") != "is-a":
                        raise TerminologyError(
                            f"{path.name}: only ICD-10-CM 'concept is-a' filters can be expanded, got "
                            f"{system} {flt.get('property')} {flt.get('op')} {value}"
                        )
                    root = _icd_dotted(value)
                    if not _icd_valid(root):
                        raise TerminologyError(f"{path.name}: ICD-10-CM filter value {value!r} not in simple_icd_10_cm")
                    ordered.append({"system": system, "code": root, "display": icd.get_description(root)})
                    for member in [root, *icd.get_descendants(root)]:
                        code = normalise_code(system, member)
                        cset.add((system, code))
                        displays.setdefault((system, code), icd.get_description(member))
            for key in cset:
                index.setdefault(key, set()).add(cid)
            codes[cid] = cset
            first[cid] = ordered

        self._index: dict[tuple[str, str], frozenset[str]] = {k: frozenset(v) for k, v in index.items()}
        self._codes: dict[str, frozenset[tuple[str, str]]] = {k: frozenset(v) for k, v in codes.items()}
        self._ordered = first
        self._displays = displays
        self._systems = frozenset(system for system, _ in self._index)
        self._names: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in names.items()}
        self._name_ingredient = name_ingredient
        self._code_ingredient = code_ingredient
        self._exclusions = exclusions
        self._name_re: re.Pattern[str] | None = None
        if self._names:
            alternation = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
            self._name_re = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])", re.IGNORECASE)
        self.name_match_concepts: frozenset[str] = frozenset(
            cid for cid, d in self._valuesets.items() if _ext_value(d, EXT_MATCH_NAME, "valueBoolean") is True
        )
        if codesystem_dir is not None:
            self._load_codesystems(Path(codesystem_dir))

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _read_valueset(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TerminologyError(f"{path.name}: cannot read JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("resourceType") != "ValueSet":
            raise TerminologyError(f"{path.name}: not a FHIR ValueSet resource")
        try:
            ValueSet.model_validate(data)
        except ValidationError as exc:
            raise TerminologyError(f"{path.name}: invalid FHIR R4 ValueSet: {exc}") from exc
        cid = data.get("id")
        if cid != path.stem:
            raise TerminologyError(f"{path.name}: id {cid!r} does not match the file name")
        if data.get("url") != VALUESET_BASE + cid:
            raise TerminologyError(f"{path.name}: url must be {VALUESET_BASE + cid}")
        if data.get("status") != "active":
            raise TerminologyError(f"{path.name}: status must be 'active'")
        includes = (data.get("compose") or {}).get("include") or []
        if not includes:
            raise TerminologyError(f"{path.name}: compose.include is empty")
        for include in includes:
            if not include.get("system"):
                raise TerminologyError(f"{path.name}: every compose.include needs a system")
            if include.get("concept") and include.get("filter"):
                raise TerminologyError(f"{path.name}: an include has both concept and filter (FHIR vsd-3)")
            if include.get("valueSet"):
                raise TerminologyError(f"{path.name}: include.valueSet is not supported")
        if (data.get("compose") or {}).get("exclude"):
            raise TerminologyError(f"{path.name}: compose.exclude is not supported")
        return data

    def _load_codesystems(self, directory: Path) -> None:
        for path in sorted(directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                CodeSystem.model_validate(data)
            except (OSError, ValueError, ValidationError) as exc:
                raise TerminologyError(f"{path.name}: invalid FHIR R4 CodeSystem: {exc}") from exc
            self._codesystems.append(data)
        local_defined = {
            c.get("code") for cs in self._codesystems if cs.get("url") == LOCAL for c in cs.get("concept") or ()
        }
        for system, code in self._index:
            if system == LOCAL and code not in local_defined:
                raise TerminologyError(f"local code {code!r} is used in a ValueSet but not defined in mbc-cds-local")

    # ------------------------------------------------------------------ hot path
    def concepts(self, system: Any, code: Any) -> frozenset[str]:
        """Ids of the ValueSets that contain ``code`` (empty frozenset if none or if the input is not strings)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return _EMPTY
        hit = self._index.get((system, code))
        if hit is not None:
            return hit
        if system not in self._systems:
            system = _SYSTEM_ALIASES.get(system, system)
        return self._index.get((system, normalise_code(system, code)), _EMPTY)

    def concepts_of_codeable(self, cc: Any) -> set[str]:
        """Concept ids of all codings of a CodeableConcept given as raw JSON (a dict). Garbage gives ``set()``."""
        out: set[str] = set()
        if not isinstance(cc, dict):
            return out
        codings = cc.get("coding")
        if not isinstance(codings, list):
            return out
        for coding in codings:
            if isinstance(coding, dict):
                hit = self.concepts(coding.get("system"), coding.get("code"))
                if hit:
                    out |= hit
        return out

    def concepts_of_text(self, text: Any) -> set[str]:
        """Drug-class ids whose ingredient names occur as whole words in ``text`` (case-insensitive).

        Only ValueSets flagged with the match-ingredient-name extension take part; a ValueSet with an
        exclude-text-pattern extension (e.g. topical or ophthalmic forms for corticosteroids) does not match a text
        that matches that pattern.
        """
        out: set[str] = set()
        if not isinstance(text, str) or not text or self._name_re is None:
            return out
        for match in self._name_re.finditer(text):
            out |= self._names.get(match.group(0).lower(), _EMPTY)
        if out and self._exclusions:
            for cid in [c for c in out if c in self._exclusions]:
                if self._exclusions[cid].search(text):
                    out.discard(cid)
        return out

    def ingredients_of_text(self, text: Any) -> set[str]:
        """Canonical ingredient names (lower case) whose names occur as whole words in ``text``."""
        out: set[str] = set()
        if not isinstance(text, str) or not text or self._name_re is None:
            return out
        for match in self._name_re.finditer(text):
            ingredient = self._name_ingredient.get(match.group(0).lower())
            if ingredient:
                out.add(ingredient)
        return out

    def ingredient_of_code(self, system: Any, code: Any) -> str | None:
        """The canonical ingredient name of an ingredient code of a drug-class ValueSet, or None."""
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        system = _SYSTEM_ALIASES.get(system, system)
        return self._code_ingredient.get((system, normalise_code(system, code)))

    def concepts_of_medication(self, cc: Any) -> set[str]:
        """Codes of a medication CodeableConcept plus ingredient-name matches in its ``text`` and coding displays."""
        out = self.concepts_of_codeable(cc)
        if not isinstance(cc, dict):
            return out
        texts = [cc.get("text")]
        codings = cc.get("coding")
        if isinstance(codings, list):
            texts.extend(c.get("display") for c in codings if isinstance(c, dict))
        for text in texts:
            if isinstance(text, str) and text:
                out |= self.concepts_of_text(text)
        return out

    # ------------------------------------------------------------------ knowledge access
    def codes(self, concept_id: str) -> frozenset[tuple[str, str]]:
        """All ``(system, normalised code)`` pairs of a concept, ICD-10-CM filters expanded. Unknown id: KeyError."""
        return self._codes[concept_id]

    def first_coding(self, concept_id: str, system: str | None = None) -> dict[str, str] | None:
        """The first listed code of a concept (optionally of one system) as a new Coding dict, or None."""
        for coding in self._ordered.get(concept_id, ()):
            if system is None or coding["system"] == system:
                return dict(coding)
        return None

    def display(self, system: Any, code: Any) -> str | None:
        """The display text of a code known to any ValueSet (ICD-10-CM descendants from simple_icd_10_cm)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        system = _SYSTEM_ALIASES.get(system, system)
        return self._displays.get((system, normalise_code(system, code)))

    def valueset(self, concept_id: str) -> dict[str, Any]:
        """A copy of the ValueSet resource (JSON) of a concept. Unknown id: KeyError."""
        return copy.deepcopy(self._valuesets[concept_id])

    def all_valuesets(self) -> list[dict[str, Any]]:
        """Copies of all ValueSet resources, sorted by id."""
        return [copy.deepcopy(self._valuesets[k]) for k in sorted(self._valuesets)]

    def codesystems(self) -> list[dict[str, Any]]:
        """Copies of the CodeSystem resources shipped with the package (the mbc-cds-local CodeSystem)."""
        return copy.deepcopy(self._codesystems)

    @property
    def concept_ids(self) -> frozenset[str]:
        return frozenset(self._valuesets)

    def has_concept(self, concept_id: str) -> bool:
        return concept_id in self._valuesets

    def ingredient_names(self, concept_ids: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
        """Lower-case ingredient names (displays and designations) -> drug-class ids, optionally filtered."""
        wanted = None if concept_ids is None else set(concept_ids)
        return {
            name: cids if wanted is None else frozenset(cids & wanted)
            for name, cids in self._names.items()
            if wanted is None or cids & wanted
        }


@functools.lru_cache(maxsize=1)
def get_terminology() -> Terminology:
    """The shared :class:`Terminology` of the package (loaded and validated on the first call)."""
    return Terminology()
