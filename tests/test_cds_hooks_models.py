"""CDS Hooks 2.0 wire models, serialization and discovery."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from cds_hooks.discovery import ServiceDefinition, discovery_document
from cds_hooks.models import (
    Action,
    Card,
    Coding,
    FeedbackRequest,
    HookRequest,
    HookResponse,
    Link,
    Source,
    Suggestion,
    SystemAction,
)
from cds_hooks.serialize import dump, prune

SPEC_REQUEST = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Patient.read patient/Observation.read",
        "subject": "cds-service4",
    },
    "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patientToGreet": {"resourceType": "Patient", "id": "1288992"},
        "nothing": None,
    },
}


def _req(**changes):
    data = {**SPEC_REQUEST, **changes}
    return HookRequest.model_validate(data)


# ------------------------------------------------------------------------------------------------ request


def test_spec_example_request_parses():
    r = _req()
    assert r.hook == "patient-view"
    assert r.patient_id() == "1288992"
    assert r.fhirServer == "http://hooks.smarthealthit.org:9080"
    assert r.access_token() == "some-opaque-fhir-access-token"
    # null and absent stay distinguishable
    assert "nothing" in r.prefetch and r.prefetch["nothing"] is None
    assert "other" not in r.prefetch


def test_token_never_in_repr_or_dump():
    r = _req()
    assert "some-opaque-fhir-access-token" not in repr(r)
    assert "some-opaque-fhir-access-token" not in r.model_dump_json()
    assert b"some-opaque-fhir-access-token" not in dump(r)


def test_minimal_request_and_extra_fields_allowed():
    r = HookRequest.model_validate(
        {
            "hook": "patient-view",
            "hookInstance": "x",
            "context": {"patientId": "p1"},
            "extension": {"org.example.thing": 1},
        }
    )
    assert r.fhirServer is None and r.fhirAuthorization is None and r.prefetch is None
    assert r.model_extra == {"extension": {"org.example.thing": 1}}


@pytest.mark.parametrize(
    "change",
    [
        {"hookInstance": ""},
        {"hookInstance": "   "},
        {"hook": ""},
        {"context": {"userId": "Practitioner/1"}},  # patient-view without patientId
        {"context": {"patientId": ""}},
        {"context": {"patientId": 12}},
        {"fhirServer": "ftp://example.org/fhir"},
        {"fhirServer": "not a url"},
        {"fhirServer": None},  # fhirAuthorization without fhirServer
        {"fhirAuthorization": {"access_token": ""}},
        {"prefetch": ["not", "an", "object"]},
    ],
)
def test_invalid_requests(change):
    with pytest.raises(ValidationError):
        _req(**change)


def test_other_hooks_do_not_need_patient_id():
    r = _req(hook="encounter-discharge", context={"userId": "Practitioner/1"})
    assert r.patient_id() is None


def test_order_hooks_need_patient_id_and_a_draft_orders_bundle():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    for hook in ("order-select", "order-sign"):
        with pytest.raises(ValidationError, match="patientId"):
            _req(hook=hook, context={"userId": "Practitioner/1", "draftOrders": bundle})
        with pytest.raises(ValidationError, match="draftOrders"):
            _req(hook=hook, context={"patientId": "p1", "draftOrders": {"resourceType": "Parameters"}})
    r = _req(hook="order-select", context={"patientId": "p1", "draftOrders": bundle, "encounterId": "e1",
                                           "selections": ["MedicationRequest/request-123"]})
    assert r.selections() == ["MedicationRequest/request-123"] and r.encounter_id() == "e1"
    assert r.draft_orders() == bundle
    with pytest.raises(ValidationError, match="selections"):
        _req(hook="order-select", context={"patientId": "p1", "draftOrders": bundle, "selections": "all"})


def test_fhir_authorization_lenient_fields():
    r = _req(fhirAuthorization={"access_token": "t"})
    assert r.fhirAuthorization.token_type == "Bearer"
    assert r.access_token() == "t"


@pytest.mark.parametrize(
    "user_id, token, expected",
    [
        ("Practitioner/123", "userPractitionerId", "123"),
        ("Practitioner/123", "userPatientId", None),
        ("PractitionerRole/r9", "userPractitionerRoleId", "r9"),
        ("PractitionerRole/r9", "userPractitionerId", None),
        ("Patient/p1", "userPatientId", "p1"),
        ("RelatedPerson/rp", "userRelatedPersonId", "rp"),
        ("123", "userPractitionerId", None),
        ("Practitioner/", "userPractitionerId", None),
    ],
)
def test_user_tokens(user_id, token, expected):
    r = _req(context={"patientId": "p", "userId": user_id})
    assert r.user_token(token) == expected


# ------------------------------------------------------------------------------------------------ cards

SRC = Source(
    label="Example guidance", topic=Coding(system="http://example.org/rules", code="r1", display="R1")
)


def test_card_summary_limit():
    Card(summary="x" * 139, indicator="info", source=SRC)
    with pytest.raises(ValidationError):
        Card(summary="x" * 140, indicator="info", source=SRC)
    with pytest.raises(ValidationError):
        Card(summary="", indicator="info", source=SRC)


def test_card_indicator_enum_and_source_required():
    for ind in ("info", "warning", "critical"):
        Card(summary="s", indicator=ind, source=SRC)
    with pytest.raises(ValidationError):
        Card(summary="s", indicator="hard-stop", source=SRC)
    with pytest.raises(ValidationError):
        Card(summary="s", indicator="info")
    with pytest.raises(ValidationError):
        Card(summary="s", indicator="info", source={"label": ""})


def _suggestion():
    return Suggestion(
        label="Do it",
        uuid="s-1",
        actions=[
            Action(type="create", description="Create", resource={"resourceType": "Task", "status": "draft"})
        ],
    )


def test_suggestions_require_selection_behavior():
    with pytest.raises(ValidationError, match="selectionBehavior"):
        Card(summary="s", indicator="info", source=SRC, suggestions=[_suggestion()])
    c = Card(summary="s", indicator="info", source=SRC, suggestions=[_suggestion()], selectionBehavior="any")
    assert c.selectionBehavior == "any"
    with pytest.raises(ValidationError):
        Card(summary="s", indicator="info", source=SRC, suggestions=[_suggestion()], selectionBehavior="all")


def test_override_reasons_need_display():
    with pytest.raises(ValidationError, match="display"):
        Card(summary="s", indicator="info", source=SRC, overrideReasons=[Coding(system="x", code="y")])
    Card(
        summary="s",
        indicator="info",
        source=SRC,
        overrideReasons=[Coding(code="y", display="Patient refused")],
    )


def test_actions_and_links():
    with pytest.raises(ValidationError):
        Action(type="create", description="d")  # no resource
    with pytest.raises(ValidationError):
        Action(type="create", description="d", resource={"id": "no-type"})
    with pytest.raises(ValidationError):
        Action(type="delete", description="d")
    Action(type="delete", description="d", resourceId="ServiceRequest/1")
    with pytest.raises(ValidationError):
        Action(type="merge", description="d", resourceId="X/1")
    with pytest.raises(ValidationError):
        Link(label="l", url="https://x", type="absolute", appContext="ctx")
    Link(label="l", url="https://x/launch", type="smart", appContext="ctx")


def test_output_models_forbid_unknown_fields():
    with pytest.raises(ValidationError):
        Card(summary="s", indicator="info", source=SRC, selection_behavior="any")


# ------------------------------------------------------------------------------------------------ feedback


def test_feedback_accepted_needs_suggestions():
    ok = FeedbackRequest.model_validate(
        {
            "feedback": [
                {
                    "card": "4e0a3a1e",
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": "e56e1945"}],
                    "outcomeTimestamp": "2020-12-11T00:00:00Z",
                }
            ]
        }
    )
    assert ok.feedback[0].timestamp().tzinfo is not None
    for bad in ({}, {"acceptedSuggestions": []}):
        with pytest.raises(ValidationError, match="acceptedSuggestions"):
            FeedbackRequest.model_validate(
                {
                    "feedback": [
                        {
                            "card": "c",
                            "outcome": "accepted",
                            "outcomeTimestamp": "2020-12-11T00:00:00Z",
                            **bad,
                        }
                    ]
                }
            )


def test_feedback_overridden_with_and_without_reason():
    fb = FeedbackRequest.model_validate(
        {
            "feedback": [
                {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2020-12-11T00:00:00Z"},
                {
                    "card": "c2",
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": {"code": "d7ecf885", "system": "https://example.com/override"},
                        "userComment": "A comment.",
                    },
                    "outcomeTimestamp": "2020-12-11T00:00:00.123+01:00",
                },
            ]
        }
    )
    assert fb.feedback[0].overrideReason is None
    assert fb.feedback[1].overrideReason.reason.code == "d7ecf885"
    assert fb.feedback[1].overrideReason.userComment == "A comment."


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c", "outcome": "overridden"},  # no timestamp
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2020-12-11"},
        {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2020-12-11T00:00:00Z"},
        {"card": "", "outcome": "overridden", "outcomeTimestamp": "2020-12-11T00:00:00Z"},
    ],
)
def test_feedback_invalid(item):
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"feedback": [item]})
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"feedback": []})


# ------------------------------------------------------------------------------------------------ serialize


def test_dump_empty_response_keeps_cards():
    assert dump(HookResponse()) == b'{"cards":[]}'
    assert dump(HookResponse(cards=[], systemActions=[])) == b'{"cards":[]}'
    assert dump({"cards": []}) == b'{"cards":[]}'


def test_dump_omits_none_and_empty_values_recursively():
    card = Card(
        summary="s",
        detail="",
        indicator="info",
        source=Source(label="L", url=None),
        links=[],
        overrideReasons=None,
        suggestions=[
            Suggestion(
                label="x",
                actions=[
                    Action(
                        type="create",
                        description="d",
                        resource={
                            "resourceType": "Task",
                            "note": [],
                            "code": {},
                            "text": "",
                            "priority": None,
                            "count": 0,
                            "flag": False,
                            "input": [{}, {"v": ""}, {"v": "kept"}],
                        },
                    )
                ],
            )
        ],
        selectionBehavior="at-most-one",
    )
    raw = dump(HookResponse(cards=[card]))
    doc = orjson.loads(raw)
    c = doc["cards"][0]
    assert set(c) == {"summary", "indicator", "source", "suggestions", "selectionBehavior"}
    assert c["source"] == {"label": "L"}
    res = c["suggestions"][0]["actions"][0]["resource"]
    assert res == {"resourceType": "Task", "count": 0, "flag": False, "input": [{"v": "kept"}]}
    for token in (b"null", b'""', b"[]", b"{}"):
        assert token not in raw


def test_dump_system_actions_when_present():
    sa = SystemAction(type="update", description="d", resource={"resourceType": "Task", "id": "1"})
    doc = orjson.loads(dump(HookResponse(systemActions=[sa])))
    assert doc["cards"] == []
    assert doc["systemActions"][0]["type"] == "update"


def test_prune_top_level():
    assert prune({"a": None, "b": [None, ""]}) is None
    assert prune([0, False, "", None]) == [0, False]


# ------------------------------------------------------------------------------------------------ discovery


def test_discovery_document():
    svc = ServiceDefinition(
        id="svc-one",
        hook="patient-view",
        title="Service one",
        description="Does one thing",
        prefetch={"patient": "Patient/{{context.patientId}}"},
    )
    bare = ServiceDefinition(id="svc-two", hook="patient-view", title=None, description="Two")
    doc = discovery_document([svc, bare])
    assert doc == {
        "services": [
            {
                "hook": "patient-view",
                "title": "Service one",
                "description": "Does one thing",
                "id": "svc-one",
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            },
            {"hook": "patient-view", "description": "Two", "id": "svc-two"},
        ]
    }
    with_req = ServiceDefinition(
        id="s3", hook="patient-view", title="t", description="d", usage_requirements="Needs a FHIR server"
    )
    assert with_req.to_json()["usageRequirements"] == "Needs a FHIR server"
    assert dump(discovery_document([])) == b'{"services":[]}'


def test_discovery_rejects_bad_definitions():
    with pytest.raises(ValueError):
        ServiceDefinition(id="a/b", hook="patient-view", title="t", description="d")
    with pytest.raises(ValueError):
        ServiceDefinition(id="a", hook="patient-view", title="t", description="")
    svc = ServiceDefinition(id="a", hook="patient-view", title="t", description="d")
    with pytest.raises(ValueError, match="duplicate"):
        discovery_document([svc, svc])
