"""Site-local codes (clinical rules v2 section 7): a deployment adds its own codes to the service's concepts.

The file named by ``MBC_CDS_LOCAL_CODES`` is either a FHIR R4 ConceptMap (each ``group.target`` is
``http://mbc-cds.example.org/fhir/ValueSet``, each element's ``target.code`` a concept id, ``group.source`` the
hospital's code system) or a JSON list of ``{"concept", "system", "code", "display"}`` objects. It is validated in
full at start-up: any unknown concept or malformed entry raises :class:`LocalCodesError` with one message naming
every bad entry, so the service does not start half-configured. The codes are added to a copy of the terminology
(lookups and ``/fhir/ValueSet/{concept}``), tagged with the code-source extension ``site-local``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir.resources.R4B.conceptmap import ConceptMap
from pydantic import ValidationError

from terminology.loader import EXT_CODE_SOURCE, ICD10CM, Terminology, TerminologyError, normalise_code

CONCEPT_TARGET_SYSTEM = "http://mbc-cds.example.org/fhir/ValueSet"
SOURCE_TAG = "site-local (MBC_CDS_LOCAL_CODES)"


class LocalCodesError(TerminologyError):
    """The site-local code file is unreadable, malformed or names an unknown concept."""


@dataclass(frozen=True, slots=True)
class LocalCode:
    concept: str
    system: str
    code: str
    display: str


def _entries_from_conceptmap(data: dict[str, Any], errors: list[str]) -> list[LocalCode]:
    try:
        ConceptMap.model_validate(data)
    except ValidationError as exc:
        errors.append(f"not a valid FHIR R4 ConceptMap: {exc.errors()[0].get('msg', exc)}")
        return []
    out: list[LocalCode] = []
    for g, group in enumerate(data.get("group") or []):
        if group.get("target") not in (CONCEPT_TARGET_SYSTEM, None):
            errors.append(f"group[{g}].target must be {CONCEPT_TARGET_SYSTEM}")
            continue
        system = group.get("source")
        if not isinstance(system, str) or not system:
            errors.append(f"group[{g}] has no source (the local code system)")
            continue
        for e, element in enumerate(group.get("element") or []):
            for target in element.get("target") or [{}]:
                out.append(LocalCode(str(target.get("code") or ""), system, str(element.get("code") or ""),
                                     str(element.get("display") or "")))
                if not target.get("code"):
                    errors.append(f"group[{g}].element[{e}] has no target concept")
    return out


def _entries_from_list(data: list[Any], errors: list[str]) -> list[LocalCode]:
    out: list[LocalCode] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            errors.append(f"entry {i} is not an object")
            continue
        missing = [k for k in ("concept", "system", "code") if not isinstance(item.get(k), str) or not item[k].strip()]
        extra = sorted(set(item) - {"concept", "system", "code", "display"})
        if missing:
            errors.append(f"entry {i} needs a non-empty string {', '.join(missing)}")
            continue
        if extra:
            errors.append(f"entry {i} has unknown keys {', '.join(extra)}")
            continue
        display = item.get("display", "")
        if not isinstance(display, str):
            errors.append(f"entry {i}: display must be a string")
            continue
        out.append(LocalCode(item["concept"].strip(), item["system"].strip(), item["code"].strip(), display))
    return out


def read_local_codes(path: str | Path, terminology: Terminology) -> list[LocalCode]:
    """Parse and validate the file; raise LocalCodesError naming the file and every problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalCodesError(f"MBC_CDS_LOCAL_CODES {path}: cannot read JSON: {exc}") from exc
    errors: list[str] = []
    if isinstance(data, dict) and data.get("resourceType") == "ConceptMap":
        entries = _entries_from_conceptmap(data, errors)
    elif isinstance(data, list):
        entries = _entries_from_list(data, errors)
    else:
        raise LocalCodesError(f"MBC_CDS_LOCAL_CODES {path}: expected a FHIR ConceptMap or a JSON list of "
                              "{concept, system, code, display}")
    for entry in entries:
        if entry.concept and not terminology.has_concept(entry.concept):
            errors.append(f"unknown concept {entry.concept!r} (code {entry.system}|{entry.code})")
        if not entry.system.startswith(("http://", "https://", "urn:")):
            errors.append(f"system {entry.system!r} of code {entry.code!r} is not a URI")
    if errors:
        raise LocalCodesError(f"MBC_CDS_LOCAL_CODES {path}: " + "; ".join(errors))
    return entries


def with_local_codes(terminology: Terminology, entries: list[LocalCode]) -> Terminology:
    """A copy of ``terminology`` whose concepts also hold the local codes (the shared instance is untouched)."""
    if not entries:
        return terminology
    t = copy.copy(terminology)
    index = dict(t._index)
    codes = dict(t._codes)
    valuesets = dict(t._valuesets)
    displays = dict(t._displays)
    for entry in entries:
        if entry.system == ICD10CM:
            raise LocalCodesError(f"MBC_CDS_LOCAL_CODES: {entry.code!r} is ICD-10-CM, not a local code system")
        key = (entry.system, normalise_code(entry.system, entry.code))
        index[key] = frozenset(index.get(key, frozenset()) | {entry.concept})
        codes[entry.concept] = frozenset(codes[entry.concept] | {key})
        displays.setdefault(key, entry.display)
        vs = valuesets[entry.concept] = copy.deepcopy(valuesets[entry.concept])
        include = next((inc for inc in vs["compose"]["include"]
                        if inc.get("system") == entry.system and "concept" in inc), None)
        if include is None:
            include = {"system": entry.system, "concept": []}
            vs["compose"]["include"].append(include)
        if not any(c.get("code") == entry.code for c in include["concept"]):
            concept: dict[str, Any] = {"code": entry.code,
                                       "extension": [{"url": EXT_CODE_SOURCE, "valueString": SOURCE_TAG}]}
            if entry.display:
                concept["display"] = entry.display
            include["concept"].append(concept)
    t._index = index
    t._codes = codes
    t._valuesets = valuesets
    t._displays = displays
    t._systems = frozenset(system for system, _ in index)
    return t


def load_local_codes(path: str | Path | None, terminology: Terminology) -> Terminology:
    if not path:
        return terminology
    return with_local_codes(terminology, read_local_codes(path, terminology))
