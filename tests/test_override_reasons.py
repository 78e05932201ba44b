"""The override reasons live in a FHIR CodeSystem (plandefinitions/CodeSystem-mbc-cds-override-reason.json): every
card lists them as before, the knowledge endpoint serves them, and a broken CodeSystem stops the service at start."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from app.cli.evaluate import evaluate_bundle
from app.samples import REFERENCE_NOW, list_samples, sample_bundle
from plandefinitions.loader import (
    OVERRIDE_REASON_SYSTEM,
    ArtifactError,
    Artifacts,
    load_artifacts,
    override_reasons,
)

# The card JSON as it was when the reasons were written in Python: the CodeSystem must give exactly this.
EXPECTED = [
    {"system": OVERRIDE_REASON_SYSTEM, "code": "already-addressed", "display": "Already addressed"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "patient-declined", "display": "Patient declined"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "not-appropriate", "display": "Not clinically appropriate now"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "data-wrong", "display": "Record is wrong or out of date"},
]


def test_every_card_lists_the_codesystem_reasons_in_order() -> None:
    sample = list_samples()[0]["id"]
    cards = evaluate_bundle(sample_bundle(sample, now=REFERENCE_NOW), now=REFERENCE_NOW)
    assert cards
    for card in cards:
        assert card["overrideReasons"] == EXPECTED
        assert list(card["overrideReasons"][0]) == ["system", "code", "display"]


def test_the_codesystem_is_served_with_the_knowledge(client: TestClient) -> None:
    served = client.get("/fhir/CodeSystem/mbc-cds-override-reason").json()
    assert served["url"] == OVERRIDE_REASON_SYSTEM
    assert [(c["code"], c["display"]) for c in served["concept"]] == [(r["code"], r["display"]) for r in EXPECTED]
    assert served["count"] == len(served["concept"])


def _with_reasons(change) -> Artifacts:  # type: ignore[no-untyped-def]
    artifacts = Artifacts(by_type=copy.deepcopy(load_artifacts().by_type))
    change(artifacts.by_type["CodeSystem"])
    return artifacts


@pytest.mark.parametrize("change", [
    lambda systems: systems.pop("mbc-cds-override-reason"),
    lambda systems: systems["mbc-cds-override-reason"]["concept"][1].pop("display"),
    lambda systems: systems["mbc-cds-override-reason"].update(concept=[]),
])
def test_a_missing_or_broken_codesystem_is_refused(change) -> None:  # type: ignore[no-untyped-def]
    assert override_reasons(load_artifacts()) == EXPECTED
    with pytest.raises(ArtifactError):
        override_reasons(_with_reasons(change))
