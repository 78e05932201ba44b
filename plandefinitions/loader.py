"""Load and validate the knowledge artifacts shipped in this package (FHIR R4 JSON, checked with fhir.resources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_hooks.cards import Coding

BASE_URL = "http://mbc-cds.example.org/fhir"
RULE_SYSTEM = f"{BASE_URL}/CodeSystem/mbc-cds-rules"
WORKLIST_TIER_SYSTEM = f"{BASE_URL}/CodeSystem/mbc-cds-worklist-tiers"
# The reasons a card offers for dismissing it (card.overrideReasons, feedback overrideReason.reason).
OVERRIDE_REASON_SYSTEM = f"{BASE_URL}/CodeSystem/mbc-cds-override-reason"
RESOURCE_LEVEL_URL = f"{BASE_URL}/StructureDefinition/resource-level"
# Card presentation, read by the engine so that no rule id is written in Python (docs/design.md).
# display-rank valueInteger: order within an indicator; card-tier valueCode: overview | emergency | uncapped;
# worklist-tier valueCode: a tier of WORKLIST_TIER_SYSTEM (plandefinitions/worklist_tiers.py); card-link valueCode:
# acp-app | assessment-form;
# level-title (complex: level valueCode + title valueString): the summary from that resource level up.
DISPLAY_RANK_URL = f"{BASE_URL}/StructureDefinition/display-rank"
CARD_TIER_URL = f"{BASE_URL}/StructureDefinition/card-tier"
WORKLIST_TIER_URL = f"{BASE_URL}/StructureDefinition/worklist-tier"
CARD_LINK_URL = f"{BASE_URL}/StructureDefinition/card-link"
LEVEL_TITLE_URL = f"{BASE_URL}/StructureDefinition/level-title"
# On a suggestion: the highest level that offers it (a better option replaces it above, e.g. radiographs by MRI).
RESOURCE_LEVEL_MAX_URL = f"{BASE_URL}/StructureDefinition/resource-level-max"
# On a Library.dataRequirement (plandefinitions/data_requirements.py): the CDS Hooks prefetch key it is asked for
# under, and the search parameter that names the patient.
PREFETCH_KEY_URL = f"{BASE_URL}/StructureDefinition/prefetch-key"
PATIENT_SEARCH_PARAM_URL = f"{BASE_URL}/StructureDefinition/patient-search-param"
HERE = Path(__file__).parent


class ArtifactError(ValueError):
    pass


@dataclass
class Artifacts:
    by_type: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return list(self.by_type.get(resource_type, {}).values())

    def get(self, resource_type: str, rid: str) -> dict[str, Any] | None:
        return self.by_type.get(resource_type, {}).get(rid)


def override_reasons(artifacts: Artifacts) -> list[Coding]:
    """The override reasons as the Codings a card lists, in the CodeSystem's order."""
    found = [cs for cs in artifacts.of("CodeSystem") if cs.get("url") == OVERRIDE_REASON_SYSTEM]
    if len(found) != 1:
        raise ArtifactError(f"one CodeSystem {OVERRIDE_REASON_SYSTEM} is needed, found {len(found)}")
    reasons: list[Coding] = []
    for concept in found[0].get("concept") or []:
        code, display = concept.get("code"), concept.get("display")
        if not (isinstance(code, str) and code and isinstance(display, str) and display):
            raise ArtifactError(f"CodeSystem/{found[0]['id']}: every override reason needs a code and a display")
        reasons.append({"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display})
    if not reasons:
        raise ArtifactError(f"CodeSystem/{found[0]['id']} lists no override reason")
    return reasons


def plan_hooks(plan: dict[str, Any], action: dict[str, Any]) -> tuple[str, ...]:
    """The CDS hooks an action answers: the names of its named-event triggers (R4 PlanDefinition.action.trigger).
    Actions with no trigger are patient-view rules."""
    names = tuple(str(t["name"]) for t in action.get("trigger") or []
                  if isinstance(t, dict) and t.get("type") == "named-event" and t.get("name"))
    return names or ("patient-view",)


def validate_resource(data: dict[str, Any], where: str) -> None:
    rtype = data.get("resourceType")
    if not isinstance(rtype, str):
        raise ArtifactError(f"{where}: no resourceType")
    try:
        get_fhir_model_class(rtype).model_validate(data)
    except (ValidationError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{where}: not a valid FHIR R4 {rtype}: {exc}") from exc


def load_artifacts(directory: Path | None = None) -> Artifacts:
    return _load(directory or HERE)


def read_artifact(path: Path) -> dict[str, Any]:
    """One knowledge file, parsed and validated as FHIR R4."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{path.name}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path.name}: not a JSON object")
    validate_resource(data, path.name)
    return data


@lru_cache(maxsize=4)
def _load(directory: Path) -> Artifacts:
    artifacts = Artifacts()
    for path in sorted(directory.glob("*.json")):
        data = read_artifact(path)
        rid = data.get("id")
        if not isinstance(rid, str):
            raise ArtifactError(f"{path.name}: no id")
        bucket = artifacts.by_type.setdefault(data["resourceType"], {})
        if rid in bucket:
            raise ArtifactError(f"{path.name}: duplicate {data['resourceType']}/{rid}")
        bucket[rid] = data
    return artifacts
