"""Prefetch template rendering."""

from __future__ import annotations

import pytest

from cds_hooks.models import HookRequest
from cds_hooks.prefetch import TemplateError, render_template, template_tokens


def _req(**context):
    ctx = {"patientId": "123", "userId": "Practitioner/abc", **context}
    return HookRequest.model_validate({"hook": "patient-view", "hookInstance": "i-1", "context": ctx})


@pytest.mark.parametrize(
    "template, expected",
    [
        ("Patient/{{context.patientId}}", "Patient/123"),
        ("Condition?patient={{context.patientId}}", "Condition?patient=123"),
        ("Condition?patient={{ context.patientId }}&_count=100", "Condition?patient=123&_count=100"),
        (
            "Observation?patient={{context.patientId}}&code=4548-4&_count=1&sort:desc=date",
            "Observation?patient=123&code=4548-4&_count=1&sort:desc=date",
        ),
        ("{{context.userId}}", "Practitioner/abc"),  # a path keeps its '/'
        ("Practitioner/{{userPractitionerId}}", "Practitioner/abc"),
        ("Encounter?subject=Patient/{{context.patientId}}", "Encounter?subject=Patient/123"),
        ("Patient?_summary=count", "Patient?_summary=count"),
    ],
)
def test_render(template, expected):
    assert render_template(template, _req()) == expected


def test_query_values_are_url_encoded():
    r = _req(patientId="a b&c=d#e?f+g")
    assert (
        render_template("Condition?patient={{context.patientId}}", r)
        == "Condition?patient=a%20b%26c%3Dd%23e%3Ff%2Bg"
    )
    # in a path, only '/' is kept
    assert render_template("Patient/{{context.patientId}}", r) == "Patient/a%20b%26c%3Dd%23e%3Ff%2Bg"


def test_list_values_comma_joined():
    r = _req(encounterIds=["e1", "e2", "e 3"], orderIds=["x,y"])
    assert render_template("Encounter?_id={{context.encounterIds}}", r) == "Encounter?_id=e1,e2,e%203"
    # a comma inside one value is FHIR-escaped so it does not split the value
    assert render_template("ServiceRequest?_id={{context.orderIds}}", r) == "ServiceRequest?_id=x%5C%2Cy"


def test_numbers_and_booleans():
    r = _req(count=5, flag=True)
    assert render_template("X?a={{context.count}}&b={{context.flag}}", r) == "X?a=5&b=true"


@pytest.mark.parametrize(
    "template, context",
    [
        ("Encounter/{{context.encounterId}}", {}),  # missing
        ("Encounter/{{context.encounterId}}", {"encounterId": None}),
        ("Encounter/{{context.encounterId}}", {"encounterId": ""}),
        ("Encounter?_id={{context.encounterId}}", {"encounterId": []}),
        ("Encounter/{{context.encounter}}", {"encounter": {"resourceType": "Encounter", "id": "1"}}),
        ("Encounter/{{context.encounter.id}}", {"encounter": {"id": "1"}}),  # only root-level fields
        ("Patient/{{context.patientId}}", {"patientId": "../metadata"}),  # no path traversal
        ("PractitionerRole/{{userPractitionerRoleId}}", {}),  # user is a Practitioner
        ("Patient/{{today()}}", {}),  # not a prefetch token
        ("Patient/{{patientId}}", {}),
        ("Patient/{{}}", {}),
    ],
)
def test_unfillable_tokens_raise(template, context):
    with pytest.raises(TemplateError):
        render_template(template, _req(**context))


def test_template_error_names_token():
    with pytest.raises(TemplateError) as ei:
        render_template("Encounter/{{context.encounterId}}", _req())
    assert ei.value.token == "context.encounterId"
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize(
    "user_id, template, expected",
    [
        ("Patient/p9", "Patient/{{userPatientId}}", "Patient/p9"),
        ("RelatedPerson/r1", "RelatedPerson/{{userRelatedPersonId}}", "RelatedPerson/r1"),
        (
            "PractitionerRole/pr",
            "PractitionerRole?_id={{userPractitionerRoleId}}&_include=PractitionerRole:practitioner",
            "PractitionerRole?_id=pr&_include=PractitionerRole:practitioner",
        ),
    ],
)
def test_user_tokens(user_id, template, expected):
    assert render_template(template, _req(userId=user_id)) == expected


def test_template_tokens():
    assert template_tokens("A?b={{context.patientId}}&c={{ userPractitionerId }}") == [
        "context.patientId",
        "userPractitionerId",
    ]
