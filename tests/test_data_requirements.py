"""The one declaration of the data the rules read (plandefinitions/Library-mbc-cds-data-requirements.json) and what
derives from it: the prefetch templates of the three services, the type each prefetch key holds, the types the
population readers keep, and the start-up check against the fact pass."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.library import Library

from app.clinical.facts import HANDLED_TYPES
from app.data_requirements import (
    check_handled,
    declared,
    prefetch_templates,
    prefetch_types,
    record_types,
    templates_of,
)
from app.worklist.readers import ENGINE_TYPES, ReadStats, bundle_records
from plandefinitions.data_requirements import LIBRARY_ID, SUBJECT_TYPE, DataRequirements, data_requirements
from plandefinitions.loader import (
    PATIENT_SEARCH_PARAM_URL,
    PREFETCH_KEY_URL,
    ArtifactError,
    Artifacts,
    load_artifacts,
    read_artifact,
)
from terminology import get_terminology

P = "{{context.patientId}}"
VS = "http://mbc-cds.example.org/fhir/ValueSet/"


def _library() -> dict[str, Any]:
    library = load_artifacts().get("Library", LIBRARY_ID)
    assert library is not None
    return copy.deepcopy(library)


def _declaration(change: Callable[[list[dict[str, Any]]], object]) -> DataRequirements:
    """The shipped declaration with its dataRequirement list changed in place by `change`."""
    library = _library()
    change(library["dataRequirement"])
    base = load_artifacts()
    return data_requirements(Artifacts(by_type={**base.by_type, "Library": {LIBRARY_ID: library}}))


def _search(rtype: str, key: str, filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"type": rtype, "extension": [{"url": PREFETCH_KEY_URL, "valueString": key},
                                                        {"url": PATIENT_SEARCH_PARAM_URL, "valueString": "patient"}]}
    if filters:
        req["codeFilter"] = filters
    return req


class _Codes:
    """A terminology stub: every concept has the same two codes, listed out of order."""

    def codes(self, concept_id: str) -> frozenset[tuple[str, str]]:
        if concept_id == "unknown":
            raise KeyError(concept_id)
        return frozenset({("http://s", f"{concept_id}-2"), ("http://s", f"{concept_id}-1")})


# ------------------------------------------------------------------------------------------- the declaration


def test_the_declaration_names_exactly_the_handled_types_and_the_patient() -> None:
    assert set(declared().types) == HANDLED_TYPES | {SUBJECT_TYPE}
    check_handled(declared(), HANDLED_TYPES)
    # read from its own file (population readers) or from the loaded knowledge (served): the same declaration
    assert data_requirements() == data_requirements(load_artifacts()) == declared()


def test_a_knowledge_file_that_is_not_a_json_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Library-x.json").write_text("[1]")
    with pytest.raises(ArtifactError, match="Library-x.json: not a JSON object"):
        read_artifact(tmp_path / "Library-x.json")


def test_a_handler_without_a_requirement_or_a_requirement_without_a_handler_is_refused() -> None:
    without_allergies = _declaration(lambda reqs: reqs.pop(next(i for i, r in enumerate(reqs)
                                                                 if r["type"] == "AllergyIntolerance")))
    with pytest.raises(ArtifactError, match="AllergyIntolerance has a fact handler but no dataRequirement"):
        check_handled(without_allergies, HANDLED_TYPES)
    with_immunizations = _declaration(lambda reqs: reqs.append(_search("Immunization", "immunizations")))
    with pytest.raises(ArtifactError, match="Immunization is declared but no fact handler reads it"):
        check_handled(with_immunizations, HANDLED_TYPES)
    # ... and with its fact handler, a new type is one requirement: it gets its prefetch template and key
    check_handled(with_immunizations, HANDLED_TYPES | {"Immunization"})
    assert templates_of(with_immunizations, get_terminology())["immunizations"] == f"Immunization?patient={P}"
    assert "Immunization" in with_immunizations.types


def test_the_library_is_valid_fhir_r4_with_one_observation_requirement_per_concept() -> None:
    library = Library.model_validate(_library())
    assert library.type.coding[0].code == "module-definition"
    observations = [r for r in library.dataRequirement if r.type == "Observation"]
    concepts = [r.codeFilter[0].valueSet.removeprefix(VS) for r in observations]
    assert len(concepts) == len(set(concepts)) > 0
    terminology = get_terminology()
    for concept in concepts:  # every value set the filter names is served on /fhir/ValueSet
        assert terminology.valueset(concept)["url"] == VS + concept


@pytest.mark.parametrize(("change", "message"), [
    (lambda reqs: reqs[1].update(codeFilter=[{"path": "code", "valueSet": VS + "breast-primary"}]), "not a path"),
    (lambda reqs: reqs[1].update(codeFilter=[{"searchParam": "code"}]), "neither a valueSet nor codes"),
    (lambda reqs: reqs[1]["extension"].pop(), "names no patient search parameter"),
    (lambda reqs: reqs[0].update(extension=_search("Patient", "patient")["extension"]), "read by id"),
    (lambda reqs: reqs.append(_search("Goal", "conditions")), "differ in type"),
    (lambda reqs: reqs.append(_search("Condition", "conditions", [{"searchParam": "category", "code": [
        {"code": "problem-list-item"}]}])), "filtered search parameters"),
    (lambda reqs: reqs[1]["extension"].append({"url": PREFETCH_KEY_URL, "valueString": "again"}), "must appear once"),
    (lambda reqs: reqs.pop(0), "Patient is not declared"),
    (lambda reqs: reqs.clear(), "declares no dataRequirement"),
])
def test_a_malformed_declaration_is_refused(change: Callable[[list[dict[str, Any]]], object], message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        _declaration(change)


def test_a_value_set_the_terminology_does_not_have_is_refused() -> None:
    bad = _declaration(lambda reqs: reqs.append(
        _search("Condition", "diagnoses", [{"searchParam": "code", "valueSet": VS + "unknown"}])))
    with pytest.raises(ArtifactError, match="ValueSet/unknown is not in terminology"):
        templates_of(bad, _Codes())


# ------------------------------------------------------------------------------------ derived: prefetch


def test_requirements_under_one_key_are_one_search_with_the_union_of_their_codes() -> None:
    def split_conditions(reqs: list[dict[str, Any]]) -> None:
        i = next(i for i, r in enumerate(reqs) if r["type"] == "Condition")
        reqs[i:i + 1] = [
            _search("Condition", "conditions", [{"searchParam": "code", "valueSet": VS + "b"}]),
            _search("Condition", "conditions", [{"searchParam": "code", "valueSet": VS + "a",
                                                 "code": [{"system": "http://s", "code": "b-1"},
                                                          {"code": "bare"}]}]),
        ]

    templates = templates_of(_declaration(split_conditions), _Codes())
    # declaration order between requirements, sorted codes within a value set, a code listed twice once,
    # a code without a system as the bare token
    assert templates["conditions"] == f"Condition?patient={P}&code=http://s|b-1,http://s|b-2,http://s|a-1," \
                                      "http://s|a-2,bare"
    assert list(templates)[:3] == ["patient", "conditions", "observations"]


def test_the_shipped_templates() -> None:
    """The discovery document's templates as they were written by hand before the declaration existed."""
    templates = prefetch_templates(get_terminology())
    observations = templates.pop("observations")
    assert templates == {
        "patient": f"Patient/{P}",
        "conditions": f"Condition?patient={P}",
        "medicationRequests": f"MedicationRequest?patient={P}&status=active",
        "medicationStatements": f"MedicationStatement?patient={P}&status=active",
        "serviceRequests": f"ServiceRequest?patient={P}",
        "encounters": f"Encounter?patient={P}",
        "careTeams": f"CareTeam?patient={P}",
        "documentReferences": f"DocumentReference?patient={P}",
        "consents": f"Consent?patient={P}",
        "goals": f"Goal?patient={P}",
        "procedures": f"Procedure?patient={P}",
        "allergies": f"AllergyIntolerance?patient={P}",
    }
    assert observations.startswith(f"Observation?patient={P}&code=http://loinc.org|89247-1,http://loinc.org|89243-0,")
    terminology = get_terminology()
    wanted = {f"{s}|{c}" for r in declared().requirements if r.type == "Observation"
              for f in r.code_filters if f.value_set
              for s, c in terminology.codes(f.value_set.removeprefix(VS))}
    listed = observations.split("&code=", 1)[1].split(",")
    assert len(listed) == len(set(listed)) and set(listed) == wanted


def test_every_service_and_the_hook_handler_use_the_derived_templates_and_types(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    templates = prefetch_templates(runtime.terminology)
    services = client.get("/cds-services").json()["services"]
    assert [s["id"] for s in services] == ["mbc-palliative-care", "mbc-order-select", "mbc-order-sign"]
    for service in services:
        assert service["prefetch"] == templates
    assert runtime.handler.evaluator.templates == templates
    assert runtime.handler.evaluator.types == prefetch_types()
    for key, template in templates.items():  # the type a key holds is the type its template asks for
        assert template.split("?", 1)[0].split("/", 1)[0] == prefetch_types()[key]


# ------------------------------------------------------------------------------------- derived: readers


def test_population_readers_keep_the_declared_types_and_skip_the_others() -> None:
    assert ENGINE_TYPES == record_types() == frozenset(declared().types)
    entries = [{"resource": {"resourceType": "Patient", "id": "p1"}}]
    entries += [{"resource": {"resourceType": t, "id": f"{t}-1", "subject": {"reference": "Patient/p1"}}}
                for t in sorted(record_types() - {"Patient"})]
    entries.append({"resource": {"resourceType": "Immunization", "id": "i1", "patient": {"reference": "Patient/p1"}}})
    stats = ReadStats()
    kept = [orjson.loads(line)["resourceType"] for _, line in
            bundle_records({"resourceType": "Bundle", "type": "collection", "entry": entries}, stats)]
    assert set(kept) == record_types() and stats.other_types == 1


# --------------------------------------------------------------------------------- served: /fhir/Library


def test_the_library_endpoint_serves_the_declaration(client: TestClient) -> None:
    bundle = client.get("/fhir/Library").json()
    served = {e["resource"]["id"]: Library.model_validate(e["resource"]) for e in bundle["entry"]}
    assert {LIBRARY_ID, "mbc-cds-predicates"} <= set(served)
    assert tuple(dict.fromkeys(r.type for r in served[LIBRARY_ID].dataRequirement)) == declared().types
    one = client.get(f"/fhir/Library/{LIBRARY_ID}")
    assert one.headers["content-type"].startswith("application/fhir+json")
    library = Library.model_validate(one.json())
    assert library.dataRequirement == served[LIBRARY_ID].dataRequirement
    by_url = client.get("/fhir/Library", params={"url": library.url}).json()
    assert [e["resource"]["id"] for e in by_url["entry"]] == [LIBRARY_ID]
