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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.valueset import ValueSet
from pydantic import ValidationError

from terminology import icd10cm as icd
from terminology.fhir_json import CodeableConceptJson, JsonValue

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
EXT_MATCH_TEXT = f"{BASE}/StructureDefinition/match-text"
MEDICATION_NAME_SYSTEM = f"{BASE}/CodeSystem/medication-name"
KNOWN_OTHER_MEDICATION = "medication-known-other"
_NON_WORD = re.compile(r"[^a-z0-9]+")

_PACKAGE_DIR = Path(__file__).resolve().parent
_EMPTY: frozenset[str] = frozenset()
_TEXT_CACHE_SIZE = 4096
_TEXT_CACHE_LONGEST = 200

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


@dataclass(frozen=True, slots=True)
class NameMatches:
    """What the medication name table finds in one text."""

    concepts: frozenset[str]      # drug-class ids (exclusion patterns applied)
    ingredients: frozenset[str]   # canonical ingredient names
    recognised: bool              # any medicine the table knows, in a class or not


_T = TypeVar("_T")


def _remember(cache: dict[str, _T], text: str, value: _T) -> _T:
    """Keep a text scan's result: drug names and procedure texts repeat from patient to patient, and a scan is a
    pure function of the text and the name tables. Bounded: long texts are not kept, a full cache starts again."""
    if len(text) <= _TEXT_CACHE_LONGEST:
        if len(cache) >= _TEXT_CACHE_SIZE:
            cache.clear()
        cache[text] = value
    return value


class TerminologyError(RuntimeError):
    """A ValueSet file is invalid or inconsistent (raised at start-up, naming the file)."""


def normalise_code(system: str, code: str) -> str:
    """ICD-10-CM: no dot, upper case (``c50.911`` -> ``C50911``); other systems: surrounding whitespace removed."""
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    return code


def normalise_words(text: str) -> str:
    """Lower case, every run of punctuation / whitespace as one space: 'Tylenol #3' -> 'tylenol 3'."""
    return _NON_WORD.sub(" ", text.lower()).strip()


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

    def __init__(self, directory: str | Path | None = None, *, codesystem_dir: str | Path | None = None,
                 medication_map: str | Path | None | bool = None) -> None:
        vs_dir = Path(directory) if directory is not None else _PACKAGE_DIR / "valuesets"
        if medication_map is None and directory is not None:
            medication_map = False  # a test directory of ValueSets gets no medication name table
        if codesystem_dir is None and directory is None:
            codesystem_dir = _PACKAGE_DIR / "codesystems"
        self._valuesets: dict[str, dict[str, Any]] = {}
        self._codesystems: list[dict[str, Any]] = []
        index: dict[tuple[str, str], set[str]] = {}
        codes: dict[str, set[tuple[str, str]]] = {}
        first: dict[str, list[dict[str, str]]] = {}
        displays: dict[tuple[str, str], str] = {}
        names: dict[str, set[str]] = {}
        # Normalised name / (system, code) -> canonical lower-case ingredient names (the codes' displays).
        name_ingredient: dict[str, set[str]] = {}
        code_ingredient: dict[tuple[str, str], set[str]] = {}
        phrases: dict[str, set[str]] = {}
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
            for ext in data.get("extension") or ():
                if ext.get("url") == EXT_MATCH_TEXT and isinstance(ext.get("valueString"), str):
                    phrase = normalise_words(ext["valueString"])
                    if phrase:
                        phrases.setdefault(phrase, set()).add(cid)
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
                            code_ingredient.setdefault((system, code), set()).add(canonical)
                        for name in [display, *(d.get("value") for d in concept.get("designation") or ())]:
                            if isinstance(name, str) and normalise_words(name):
                                key = normalise_words(name)
                                names.setdefault(key, set()).add(cid)
                                if canonical:
                                    name_ingredient.setdefault(key, set()).add(canonical)
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
            for pair in cset:
                index.setdefault(pair, set()).add(cid)
            codes[cid] = cset
            first[cid] = ordered

        if medication_map is not False:
            map_path = Path(medication_map) if isinstance(medication_map, str | Path) and medication_map \
                else _PACKAGE_DIR / "conceptmaps" / "medication-names.json"
            self._load_medication_map(map_path, index, names, name_ingredient, code_ingredient)
        self._index: dict[tuple[str, str], frozenset[str]] = {k: frozenset(v) for k, v in index.items()}
        self._codes: dict[str, frozenset[tuple[str, str]]] = {k: frozenset(v) for k, v in codes.items()}
        self._ordered = first
        self._displays = displays
        self._systems = frozenset(system for system, _ in self._index)
        self._names: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in names.items()}
        self._name_ingredient = {k: frozenset(v) for k, v in name_ingredient.items()}
        self._code_ingredient = {k: frozenset(v) for k, v in code_ingredient.items()}
        self._exclusions = exclusions
        self._name_re = _word_regex(self._names)
        self._phrases: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in phrases.items()}
        self._phrase_re = _word_regex(self._phrases)
        # Text scans, remembered (they read the name tables only, which site-local codes do not change).
        self._name_cache: dict[str, NameMatches] = {}
        self._phrase_cache: dict[str, frozenset[str]] = {}
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

    @staticmethod
    def _load_medication_map(path: Path, index: dict[tuple[str, str], set[str]], names: dict[str, set[str]],
                             name_ingredient: dict[str, set[str]],
                             code_ingredient: dict[tuple[str, str], set[str]]) -> None:
        """Brand / free-text names and RxNorm product codes -> the ingredients (and so the classes) they contain."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ConceptMap.model_validate(data)
        except (OSError, ValueError, ValidationError) as exc:
            raise TerminologyError(f"{path.name}: invalid FHIR R4 ConceptMap: {exc}") from exc
        for group in data.get("group") or ():
            source, target_system = group.get("source"), group.get("target")
            for element in group.get("element") or ():
                classes: set[str] = set()
                ingredients: set[str] = set()
                other = False
                for target in element.get("target") or ():
                    if target.get("equivalence") == "unmatched":
                        other = True
                        continue
                    key = (str(target_system), normalise_code(str(target_system), str(target.get("code"))))
                    hit = index.get(key)
                    if not hit:
                        raise TerminologyError(f"{path.name}: {element.get('code')!r} maps to {key} which is in no "
                                               "drug-class ValueSet")
                    classes |= {c for c in hit if c.startswith("drug-")}
                    ingredients |= code_ingredient.get(key, set())
                if source == MEDICATION_NAME_SYSTEM:
                    key_name = normalise_words(str(element.get("code") or ""))
                    if not key_name:
                        raise TerminologyError(f"{path.name}: empty medication name")
                    names.setdefault(key_name, set()).update(classes or ({KNOWN_OTHER_MEDICATION} if other else set()))
                    if ingredients:
                        name_ingredient.setdefault(key_name, set()).update(ingredients)
                elif source in (RXNORM, SNOMED):  # product codes; SNOMED CT substances (allergies)
                    key_code = (source, normalise_code(source, str(element.get("code"))))
                    index.setdefault(key_code, set()).update(classes)
                    code_ingredient.setdefault(key_code, set()).update(ingredients)
                else:
                    raise TerminologyError(f"{path.name}: unsupported ConceptMap group source {source!r}")

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
    def concepts(self, system: JsonValue, code: JsonValue) -> frozenset[str]:
        """Ids of the ValueSets that contain ``code`` (empty frozenset if none or if the input is not strings)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return _EMPTY
        hit = self._index.get((system, code))
        if hit is not None:
            return hit
        if system not in self._systems:
            system = _SYSTEM_ALIASES.get(system, system)
        elif system != ICD10CM and code.strip() == code:
            # Normalising would not change the key: the look-up above was the only one (the common miss, e.g.
            # each vital sign of a large record).
            return _EMPTY
        return self._index.get((system, normalise_code(system, code)), _EMPTY)

    def concepts_of_codeable(self, cc: CodeableConceptJson | None) -> set[str]:
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

    def concepts_of_text(self, text: JsonValue) -> set[str]:
        """Drug-class ids whose ingredient names occur as whole words in ``text`` (case-insensitive).

        Only ValueSets flagged with the match-ingredient-name extension take part; a ValueSet with an
        exclude-text-pattern extension (e.g. topical or ophthalmic forms for corticosteroids) does not match a text
        that matches that pattern.
        """
        if not isinstance(text, str) or not text or self._name_re is None:
            return set()
        return set(self._name_matches(text).concepts)

    def ingredients_of_text(self, text: JsonValue) -> set[str]:
        """Canonical ingredient names (lower case) of the ingredient / brand names found as whole words in ``text``."""
        if not isinstance(text, str) or not text or self._name_re is None:
            return set()
        return set(self._name_matches(text).ingredients)

    def ingredients_of_code(self, system: JsonValue, code: JsonValue) -> frozenset[str]:
        """Canonical ingredient names of an RxNorm ingredient or product code (or local ingredient code)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return _EMPTY
        system = _SYSTEM_ALIASES.get(system, system)
        return self._code_ingredient.get((system, normalise_code(system, code)), _EMPTY)

    def recognises_medication_text(self, text: JsonValue) -> bool:
        """True when ``text`` names any medicine the name table knows, in or outside the drug classes."""
        if not isinstance(text, str) or not text or self._name_re is None:
            return False
        return self._name_matches(text).recognised

    def concepts_of_phrases(self, text: JsonValue) -> set[str]:
        """Concept ids whose match-text phrases occur as whole words in ``text`` (treatments on record)."""
        if not isinstance(text, str) or not text or self._phrase_re is None:
            return set()
        found = self._phrase_cache.get(text)
        if found is None:
            hits: set[str] = set()
            for match in self._phrase_re.finditer(normalise_words(text)):
                hits |= self._phrases.get(match.group(0), _EMPTY)
            found = _remember(self._phrase_cache, text, frozenset(hits))
        return set(found)

    def _name_matches(self, text: str) -> NameMatches:
        found = self._name_cache.get(text)
        if found is not None:
            return found
        assert self._name_re is not None  # callers check
        concepts: set[str] = set()
        ingredients: set[str] = set()
        recognised = False
        for match in self._name_re.finditer(normalise_words(text)):
            recognised = True
            concepts |= self._names.get(match.group(0), _EMPTY)
            ingredients |= self._name_ingredient.get(match.group(0), _EMPTY)
        concepts.discard(KNOWN_OTHER_MEDICATION)
        if concepts and self._exclusions:
            for cid in [c for c in concepts if c in self._exclusions]:
                if self._exclusions[cid].search(text):
                    concepts.discard(cid)
        return _remember(self._name_cache, text, NameMatches(frozenset(concepts), frozenset(ingredients), recognised))

    def concepts_of_medication(self, cc: CodeableConceptJson | None) -> set[str]:
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

    def display(self, system: JsonValue, code: JsonValue) -> str | None:
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
        """Normalised ingredient / brand names -> drug-class ids (optionally filtered; non-class names left out)."""
        wanted = None if concept_ids is None else set(concept_ids)
        out: dict[str, frozenset[str]] = {}
        for name, cids in self._names.items():
            classes = cids - {KNOWN_OTHER_MEDICATION} if wanted is None else cids & wanted
            if classes:
                out[name] = frozenset(classes)
        return out


def _word_regex(names: Mapping[str, Any]) -> re.Pattern[str] | None:
    """One alternation over normalised names, longest first, matched only on whole words of normalised text."""
    if not names:
        return None
    alternation = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])")


@functools.lru_cache(maxsize=1)
def get_terminology() -> Terminology:
    """The shared :class:`Terminology` of the package (loaded and validated on the first call)."""
    return Terminology()
