"""order-select and order-sign (clinical-rules section 5b): each rule positive and negative at both hooks, the
suggestions acting on the draft orders (and never re-firing once accepted), requests as the Sandbox sends them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.orders.radiotherapy import (
    EXT_DOSE_TO_VOLUME,
    EXT_FRACTIONS,
    parse_fractionation_text,
    read_fractionation,
)
from tests.order_cases import (
    MORPHINE,
    OXYCODONE,
    PID,
    active_med,
    allergy,
    apply_suggestion,
    condition,
    med_draft,
    observation,
    order_request,
    patient,
    rt_draft,
    sandbox_empty_draft,
)

HOOKS = ("order-select", "order-sign")
URL = {"order-select": "/cds-services/mbc-order-select", "order-sign": "/cds-services/mbc-order-sign"}
BOWEL_OBSTRUCTION = ("K56.609", "Unspecified intestinal obstruction, unspecified as to partial versus complete")


def call(client: TestClient, hook: str, resources: list[dict[str, Any]], drafts: list[dict[str, Any]],
         **kw: Any) -> list[dict[str, Any]]:
    r = client.post(URL[hook], json=order_request(hook, resources, drafts, **kw))
    assert r.status_code == 200, r.text
    return r.json()["cards"]


def by_rule(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def assert_valid_suggestions(card: dict[str, Any]) -> None:
    assert card["selectionBehavior"] in ("at-most-one", "any")
    for s in card["suggestions"]:
        assert s["uuid"] and s["label"]
        for a in s["actions"]:
            assert a["description"]
            if a["type"] in ("create", "update"):
                get_fhir_model_class(a["resource"]["resourceType"]).model_validate(a["resource"])
            else:
                assert a["type"] == "delete" and "/" in a["resourceId"]


def fire_until_quiet(client: TestClient, hook: str, resources: list[dict[str, Any]], drafts: list[dict[str, Any]],
                     rule: str) -> list[dict[str, Any]]:
    """Accept the card's first suggestion, call again with the changed drafts; the same card must not return."""
    card = by_rule(call(client, hook, resources, drafts))[rule]
    assert_valid_suggestions(card)
    changed = apply_suggestion(drafts, card["suggestions"][0])
    selections = [f"{d['resourceType']}/{d['id']}" for d in changed]
    again = call(client, hook, resources, changed, selections=selections) if hook == "order-select" \
        else call(client, hook, resources, changed)
    assert rule not in by_rule(again)
    return changed


# -- discovery and protocol ------------------------------------------------------------------------------
def test_discovery_lists_the_order_services_with_the_same_prefetch(client: TestClient) -> None:
    services = {s["id"]: s for s in client.get("/cds-services").json()["services"]}
    assert services["mbc-order-select"]["hook"] == "order-select"
    assert services["mbc-order-sign"]["hook"] == "order-sign"
    pv = services["mbc-palliative-care"]["prefetch"]
    assert services["mbc-order-select"]["prefetch"] == pv == services["mbc-order-sign"]["prefetch"]


@pytest.mark.parametrize("hook", HOOKS)
def test_wrong_hook_for_an_order_service_is_400(client: TestClient, hook: str) -> None:
    body = order_request(hook, patient(), [med_draft("d1", *MORPHINE)])
    body["hook"] = "patient-view"
    r = client.post(URL[hook], json=body)
    assert r.status_code == 400 and r.json()["error"] == "wrong-hook"


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("bad, reason", [
    ({"resourceType": "Parameters"}, "Bundle"),
    ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, "entry[0]"),
    ({"resourceType": "Bundle", "entry": "nope"}, "entry"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "d1",
                                                        "status": "draft", "intent": "order",
                                                        "subject": {"reference": "Patient/x"},
                                                        "medicationCodeableConcept": "morphine"}}]},
     "medicationCodeableConcept"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "s1",
                                                        "status": 7, "intent": "order",
                                                        "subject": {"reference": "Patient/x"}}}]}, "status"),
])
def test_malformed_draft_orders_are_400_with_a_reason(client: TestClient, hook: str, bad: dict[str, Any],
                                                        reason: str) -> None:
    body = order_request(hook, patient(), [med_draft("d1", *MORPHINE)])
    body["context"]["draftOrders"] = bad
    r = client.post(URL[hook], json=body)
    assert r.status_code == 400, r.text
    assert reason in r.json()["detail"]


def test_missing_draft_orders_and_bad_selections_are_400(client: TestClient) -> None:
    body = order_request("order-sign", patient(), [med_draft("d1", *MORPHINE)])
    del body["context"]["draftOrders"]
    assert client.post(URL["order-sign"], json=body).status_code == 400
    body = order_request("order-select", patient(), [med_draft("d1", *MORPHINE)], selections=["not a reference"])
    r = client.post(URL["order-select"], json=body)
    assert r.status_code == 400 and "selections" in r.json()["detail"]


@pytest.mark.parametrize("hook", HOOKS)
def test_order_feedback_endpoint_stores_feedback(client: TestClient, hook: str) -> None:
    card = by_rule(call(client, hook, patient(), [med_draft("request-123", *MORPHINE)]))["order-opioid-laxative"]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-20T10:01:00Z",
                        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}]}
    r = client.post(f"{URL[hook]}/feedback", json=fb)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("hook", HOOKS)
def test_order_services_verify_the_jwt_like_patient_view(tmp_path: Any, hook: str) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, require_jwt=True, public_base_url="http://testserver",
                                   allowed_fhir_servers="*"))
    with TestClient(app) as c:
        r = c.post(URL[hook], json=order_request(hook, patient(), [med_draft("d1", *MORPHINE)]))
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert c.post(f"{URL[hook]}/feedback", json={"feedback": []}).status_code == 401


# -- Sandbox Rx View / Rx Sign --------------------------------------------------------------------------
def sandbox_body(hook: str, draft: dict[str, Any]) -> dict[str, Any]:
    """The Sandbox's context: draftOrders is a Bundle with only `entry` (no `type`); Rx View adds `selections`."""
    body = order_request(hook, patient(), [draft])
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
    return body


def test_sandbox_rx_view_opening_draft_without_medication_or_intent_gets_no_cards(client: TestClient) -> None:
    r = client.post(URL["order-select"], json=sandbox_body("order-select", sandbox_empty_draft()))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_sandbox_rx_view_and_rx_sign_with_a_morphine_product(client: TestClient) -> None:
    draft = med_draft("request-123", *MORPHINE)
    body = sandbox_body("order-select", draft)
    assert body["context"]["selections"] == ["MedicationRequest/request-123"]
    select = client.post(URL["order-select"], json=body).json()["cards"]
    body = sandbox_body("order-sign", draft)
    assert "selections" not in body["context"]
    sign = client.post(URL["order-sign"], json=body).json()["cards"]
    for cards in (select, sign):
        card = by_rule(cards)["order-opioid-laxative"]
        assert card["indicator"] == "warning" and len(card["summary"]) < 140
        assert "morphine sulfate 15 MG Oral Tablet" in card["summary"]
        suggestion = card["suggestions"][0]
        assert suggestion["uuid"] and card["uuid"]  # the Sandbox sends feedback only when both have one
        med = suggestion["actions"][0]["resource"]["medicationCodeableConcept"]
        assert med["text"] and med["coding"][0]["code"]  # the Sandbox applies it only with both
    assert [c["summary"] for c in select] == [c["summary"] for c in sign]


# -- the rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hook", HOOKS)
def test_opioid_laxative_fires_and_its_senna_draft_never_loops(client: TestClient, hook: str) -> None:
    drafts = [med_draft("request-123", *OXYCODONE)]
    card = by_rule(call(client, hook, patient(), drafts))["order-opioid-laxative"]
    action = card["suggestions"][0]["actions"][0]
    assert action["type"] == "create"
    res = action["resource"]
    assert res["status"] == "draft" and res["intent"] == "proposal" and "dosageInstruction" not in res
    assert "senna" in res["medicationCodeableConcept"]["text"].lower()
    assert res["subject"]["reference"] == f"Patient/{PID}"
    fire_until_quiet(client, hook, patient(), drafts, "order-opioid-laxative")


@pytest.mark.parametrize("hook", HOOKS)
def test_opioid_laxative_silent_when_a_laxative_is_drafted_active_or_obstruction(client: TestClient,
                                                                                  hook: str) -> None:
    opioid = med_draft("request-123", *MORPHINE)
    lax = med_draft("lax-1", "Senna 8.6 MG Oral Tablet")
    assert "order-opioid-laxative" not in by_rule(call(client, hook, patient(), [lax, opioid]))
    on_lax = patient(active_med("m-lax", "docusate sodium 100 MG Oral Capsule"))
    assert "order-opioid-laxative" not in by_rule(call(client, hook, on_lax, [opioid]))
    obstructed = patient(condition("sbo", *BOWEL_OBSTRUCTION, days_ago=2))
    assert "order-opioid-laxative" not in by_rule(call(client, hook, obstructed, [opioid]))
    # No absence claim on a medication list with a drug nobody could classify.
    unknown = patient(active_med("m-x", "Zyxoprin 10 mg tablet"))
    assert "order-opioid-laxative" not in by_rule(call(client, hook, unknown, [opioid]))


@pytest.mark.parametrize("hook", HOOKS)
def test_no_cards_outside_metastatic_breast_cancer(client: TestClient, hook: str) -> None:
    not_mbc = [r for r in patient() if r.get("id") != "bone-met"]
    assert call(client, hook, not_mbc, [med_draft("request-123", *MORPHINE)]) == []


@pytest.mark.parametrize("hook", HOOKS)
def test_allergy_card_names_the_allergy_and_deletes_the_draft(client: TestClient, hook: str) -> None:
    resources = patient(allergy("alg-1", "Morphine", reaction="Hives"))
    drafts = [med_draft("request-123", *MORPHINE)]
    card = by_rule(call(client, hook, resources, drafts))["order-allergy"]
    assert card["indicator"] == "critical"
    assert "Morphine" in card["summary"]
    assert "Hives" in card["detail"] and "AllergyIntolerance/alg-1" in card["detail"]
    action = card["suggestions"][0]["actions"][0]
    assert action == {"type": "delete", "description": action["description"],
                      "resourceId": "MedicationRequest/request-123"}
    changed = fire_until_quiet(client, hook, resources, drafts, "order-allergy")
    assert changed == []


@pytest.mark.parametrize("hook", HOOKS)
def test_allergy_by_class_and_silent_for_another_drug(client: TestClient, hook: str) -> None:
    resources = patient(allergy("alg-1", "Morphine", reaction="Anaphylaxis"))
    assert "order-allergy" not in by_rule(call(client, hook, resources, [med_draft("d1", "Senna 8.6 MG Oral Tablet")]))
    refuted = allergy("alg-2", "Morphine")
    refuted["verificationStatus"]["coding"][0]["code"] = "refuted"
    assert "order-allergy" not in by_rule(call(client, hook, patient(refuted), [med_draft("d1", *MORPHINE)]))


@pytest.mark.parametrize("hook", HOOKS)
def test_radiotherapy_multi_fraction_for_bone_pain_suggests_8gy_single_fraction(client: TestClient,
                                                                                hook: str) -> None:
    resources = patient(observation("pain", "72514-3", 7, "{score}", days_ago=2))
    drafts = [rt_draft(per_cgy=400, fractions=5)]
    card = by_rule(call(client, hook, resources, drafts))["order-radiotherapy-single-fraction"]
    assert card["indicator"] == "warning"
    assert "20 Gy in 5 fractions" in card["summary"]
    assert "NICE CG81 1.5.16" in card["source"]["label"] + card["detail"]
    action = card["suggestions"][0]["actions"][0]
    assert action["type"] == "update"
    updated = action["resource"]
    fx = read_fractionation(updated)
    assert fx is not None and fx.fractions == 1 and fx.total_gy == 8
    ext = {e["url"]: e for e in updated["extension"]}
    assert EXT_FRACTIONS not in ext  # a CodeX course prescription carries its fractions per volume
    parts = {p["url"]: p for p in ext[EXT_DOSE_TO_VOLUME]["extension"]}
    assert parts["volume"]["valueReference"]["reference"] == "BodyStructure/vol-l3"
    assert parts["totalDose"]["valueQuantity"]["value"] == 800 and parts["fractions"]["valuePositiveInt"] == 1
    assert "orderDetail" not in updated
    for key in ("id", "status", "intent", "subject", "requester", "reasonReference", "meta", "note", "code"):
        assert updated[key] == drafts[0][key], key
    fire_until_quiet(client, hook, resources, drafts, "order-radiotherapy-single-fraction")


@pytest.mark.parametrize("hook", HOOKS)
def test_radiotherapy_unreadable_fractionation_is_info_without_suggestion(client: TestClient, hook: str) -> None:
    draft = rt_draft(per_cgy=None, fractions=None, text="Palliative radiotherapy to L3, dose per planning")
    card = by_rule(call(client, hook, patient(), [draft]))["order-radiotherapy-single-fraction"]
    assert card["indicator"] == "info" and "suggestions" not in card


@pytest.mark.parametrize("hook", HOOKS)
def test_radiotherapy_from_text_and_its_negatives(client: TestClient, hook: str) -> None:
    text_draft = rt_draft(per_cgy=None, fractions=None, text="Palliative radiotherapy L3 20 Gy in 5 fractions")
    card = by_rule(call(client, hook, patient(), [text_draft]))["order-radiotherapy-single-fraction"]
    updated = card["suggestions"][0]["actions"][0]["resource"]
    assert "8 Gy in 1 fraction" in updated["code"]["text"] and "20 Gy" not in updated["code"]["text"]
    single = rt_draft(per_cgy=800, fractions=1)
    assert "order-radiotherapy-single-fraction" not in by_rule(call(client, hook, patient(), [single]))
    cord = patient(condition("mscc", "G95.20", "Unspecified cord compression", days_ago=3))
    assert "order-radiotherapy-single-fraction" not in by_rule(call(client, hook, cord, [rt_draft()]))
    fracture = patient(condition("fx", "M84.58XA", "Pathological fracture in neoplastic disease, other site",
                                 days_ago=3))
    assert "order-radiotherapy-single-fraction" not in by_rule(call(client, hook, fracture, [rt_draft()]))
    brain = patient(condition("brain-met", "C79.31", "Secondary malignant neoplasm of brain"))
    to_brain = rt_draft(reason_ref="Condition/brain-met", text="Whole brain radiotherapy 20 Gy in 5 fractions")
    assert "order-radiotherapy-single-fraction" not in by_rule(call(client, hook, brain, [to_brain]))
    no_bone = patient(bone=False)
    assert "order-radiotherapy-single-fraction" not in by_rule(
        call(client, hook, no_bone, [rt_draft(reason_ref=None)]))


@pytest.mark.parametrize("hook", HOOKS)
def test_anticonvulsant_prophylaxis(client: TestClient, hook: str) -> None:
    brain = patient(condition("brain-met", "C79.31", "Secondary malignant neoplasm of brain"))
    drafts = [med_draft("d1", "levetiracetam 500 MG Oral Tablet")]
    card = by_rule(call(client, hook, brain, drafts))["order-anticonvulsant-prophylaxis"]
    assert card["indicator"] == "info" and "suggestions" not in card
    seizure = brain + [condition("sz", "G40.909", "Epilepsy, unspecified, not intractable, without status "
                                                 "epilepticus", days_ago=10)]
    assert "order-anticonvulsant-prophylaxis" not in by_rule(call(client, hook, seizure, drafts))
    assert "order-anticonvulsant-prophylaxis" not in by_rule(call(client, hook, patient(), drafts))


@pytest.mark.parametrize("hook", HOOKS)
def test_stimulant_laxative_in_obstruction_is_removed(client: TestClient, hook: str) -> None:
    obstructed = patient(condition("sbo", *BOWEL_OBSTRUCTION, days_ago=2))
    drafts = [med_draft("lax-1", "bisacodyl 5 MG Delayed Release Oral Tablet")]
    card = by_rule(call(client, hook, obstructed, drafts))["order-stimulant-laxative-obstruction"]
    assert card["indicator"] == "warning"
    assert card["suggestions"][0]["actions"][0] == {
        "type": "delete", "description": card["suggestions"][0]["actions"][0]["description"],
        "resourceId": "MedicationRequest/lax-1"}
    fire_until_quiet(client, hook, obstructed, drafts, "order-stimulant-laxative-obstruction")
    assert "order-stimulant-laxative-obstruction" not in by_rule(call(client, hook, patient(), drafts))
    osmotic = [med_draft("lax-2", "lactulose 10 GM per 15 ML Oral Solution")]
    assert "order-stimulant-laxative-obstruction" not in by_rule(call(client, hook, obstructed, osmotic))


@pytest.mark.parametrize("hook", HOOKS)
def test_morphine_with_severe_renal_impairment(client: TestClient, hook: str) -> None:
    renal = patient(observation("egfr", "62238-1", 22, "mL/min/{1.73_m2}", days_ago=10))
    drafts = [med_draft("request-123", *MORPHINE)]
    card = by_rule(call(client, hook, renal, drafts))["order-morphine-renal"]
    assert card["indicator"] == "warning" and "Observation/egfr" in card["detail"]
    fine = patient(observation("egfr", "62238-1", 75, "mL/min/{1.73_m2}", days_ago=10))
    assert "order-morphine-renal" not in by_rule(call(client, hook, fine, drafts))
    old = patient(observation("egfr", "62238-1", 22, "mL/min/{1.73_m2}", days_ago=200))
    assert "order-morphine-renal" not in by_rule(call(client, hook, old, drafts))
    assert "order-morphine-renal" not in by_rule(call(client, hook, renal, [med_draft("d", *OXYCODONE)]))


@pytest.mark.parametrize("hook", HOOKS)
def test_bone_agent_checks_info_and_warning_for_zoledronic_acid_in_renal_failure(client: TestClient,
                                                                                 hook: str) -> None:
    zol = [med_draft("zol", "zoledronic acid 4 MG per 5 ML Injection")]
    card = by_rule(call(client, hook, patient(), zol))["order-bone-agent-checks"]
    assert card["indicator"] == "info"
    renal = patient(observation("egfr", "62238-1", 25, "mL/min/{1.73_m2}", days_ago=5))
    assert by_rule(call(client, hook, renal, zol))["order-bone-agent-checks"]["indicator"] == "warning"
    deno = [med_draft("deno", "denosumab 120 MG per 1.7 ML Injection")]
    assert by_rule(call(client, hook, renal, deno))["order-bone-agent-checks"]["indicator"] == "info"
    assert "order-bone-agent-checks" not in by_rule(call(client, hook, patient(), [med_draft("d", *MORPHINE)]))


# -- selections, cache ----------------------------------------------------------------------------------
def test_order_select_judges_only_the_selected_drafts(client: TestClient) -> None:
    resources = patient(allergy("alg-1", "Morphine"))
    drafts = [med_draft("old", *MORPHINE), med_draft("new", "levetiracetam 500 MG Oral Tablet")]
    cards = call(client, "order-select", resources, drafts, selections=["MedicationRequest/new"])
    assert "order-allergy" not in by_rule(cards)
    sign = by_rule(call(client, "order-sign", resources, drafts))
    assert "MedicationRequest/old" in sign["order-allergy"]["detail"]
    plain = patient()
    assert "order-opioid-laxative" not in by_rule(
        call(client, "order-select", plain, drafts, selections=["MedicationRequest/new"]))
    assert "order-opioid-laxative" in by_rule(
        call(client, "order-select", plain, drafts, selections=["MedicationRequest/old"]))


def test_order_sign_reuses_what_order_select_computed_and_never_another_patients(client: TestClient) -> None:
    cache = client.app.state.runtime.handler.evaluator.order_cache  # type: ignore[attr-defined]
    drafts = [med_draft("request-123", *MORPHINE)]
    call(client, "order-select", patient(), drafts)
    hits = cache.hits
    call(client, "order-sign", patient(), drafts)
    assert cache.hits == hits + 1
    # A different record, a different draft: evaluated afresh (and answered for what they are).
    allergic = patient(allergy("alg-1", "Morphine"))
    assert "order-allergy" in by_rule(call(client, "order-sign", allergic, drafts))
    assert cache.hits == hits + 1
    call(client, "order-sign", patient(), [med_draft("request-123", *OXYCODONE)])
    assert cache.hits == hits + 1


# -- radiotherapy reading -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, fractions, total", [
    ("20 Gy in 5 fractions", 5, 20), ("8Gy x1", 1, 8), ("4 x 5 Gy", 4, 20), ("30 Gy / 10 fractions", 10, 30),
    ("single 8 Gy fraction", 1, 8), ("2000 cGy in 5 fractions", 5, 20),
])
def test_fractionation_text(text: str, fractions: int, total: float) -> None:
    fx = parse_fractionation_text(text)
    assert fx is not None and fx.fractions == fractions and fx.total_gy == pytest.approx(total)


@pytest.mark.parametrize("text", ["radiotherapy to L3", "20 Gy in 5 fractions or 8 Gy x1", "500 Gy x 2", ""])
def test_fractionation_text_refuses_what_it_cannot_read_safely(text: str) -> None:
    assert parse_fractionation_text(text) is None


def _phase_prescription_30gy_in_10() -> list[dict]:
    """CodeX phase-prescription extensions: 10 fractions of 300 cGy to one volume."""
    return [
        {"url": EXT_FRACTIONS, "valuePositiveInt": 10},
        {"url": EXT_DOSE_TO_VOLUME, "extension": [
            {"url": "volume", "valueReference": {"reference": "BodyStructure/v1"}},
            {"url": "fractionDose", "valueQuantity": {"value": 300, "unit": "cGy"}},
            {"url": "totalDose", "valueQuantity": {"value": 3000, "unit": "cGy"}}]}]


def test_phase_prescription_extensions_are_read() -> None:
    draft = rt_draft(per_cgy=None, fractions=None)
    draft["extension"] = _phase_prescription_30gy_in_10()
    fx = read_fractionation(draft)
    assert fx is not None and (fx.fractions, fx.total_gy) == (10, 30)
    # The dose per fraction is read too: without the total, it gives the total.
    draft["extension"][1]["extension"] = draft["extension"][1]["extension"][:2]
    fx = read_fractionation(draft)
    assert fx is not None and (fx.fractions, fx.total_gy) == (10, 30)


@pytest.mark.parametrize("hook", HOOKS)
def test_never_suggests_a_laxative_the_patient_is_allergic_to(client: TestClient, hook: str) -> None:
    resources = patient(allergy("alg-senna", "Senna", reaction="Abdominal cramps"))
    card = by_rule(call(client, hook, resources, [med_draft("request-123", *MORPHINE)]))["order-opioid-laxative"]
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "AllergyIntolerance/alg-senna" in card["detail"]


@pytest.mark.parametrize("hook", HOOKS)
def test_an_allergen_opioid_gets_the_allergy_card_not_a_laxative(client: TestClient, hook: str) -> None:
    resources = patient(allergy("alg-1", "Morphine"))
    cards = by_rule(call(client, hook, resources, [med_draft("request-123", *MORPHINE)]))
    assert "order-allergy" in cards and "order-opioid-laxative" not in cards


@pytest.mark.parametrize("hook", HOOKS)
def test_allergy_by_name_when_the_drug_is_in_no_class(client: TestClient, hook: str) -> None:
    resources = patient(allergy("alg-amox", "Amoxicillin", reaction="Urticaria"))
    card = by_rule(call(client, hook, resources, [med_draft("abx", "amoxicillin 500 MG Oral Capsule")]))
    assert card["order-allergy"]["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/abx"


def test_update_of_a_phase_prescription_writes_the_phase_extensions() -> None:
    from app.orders.radiotherapy import PROFILE_PHASE, with_fractionation

    draft = rt_draft(per_cgy=None, fractions=None)
    draft["meta"] = {"profile": [PROFILE_PHASE]}
    draft["extension"] = _phase_prescription_30gy_in_10()
    updated = with_fractionation(draft, 800, 1)
    ext = {e["url"]: e for e in updated["extension"]}
    assert ext[EXT_FRACTIONS]["valuePositiveInt"] == 1
    parts = {p["url"]: p["valueQuantity"]["value"] for p in ext[EXT_DOSE_TO_VOLUME]["extension"]
             if "valueQuantity" in p}
    assert parts == {"fractionDose": 800, "totalDose": 800}
    get_fhir_model_class("ServiceRequest").model_validate(updated)
    fx = read_fractionation(updated)
    assert fx is not None and (fx.fractions, fx.total_gy) == (1, 8)


def test_lru_cache_is_bounded_expires_and_keys_on_every_part() -> None:
    from app.orders.cache import LruCache, cache_key

    now = [0.0]
    cache: LruCache[str] = LruCache(2, ttl=10, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"          # a is now the most recent
    cache.put("c", "C")                    # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == "A" and len(cache) == 2
    now[0] = 11
    assert cache.get("a") is None          # expired
    assert LruCache(0, ttl=10).get("x") is None
    base = ("p1", [{"resourceType": "Condition", "id": "c1"}], [{"id": "d1"}], "settings")
    keys = {cache_key(*base), cache_key("p2", *base[1:]), cache_key(base[0], [], *base[2:]),
            cache_key(*base[:2], [{"id": "d2"}], base[3]), cache_key(*base[:3], "other settings")}
    assert len(keys) == 5


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                   max_size=3), max_leaves=8)
_FIELDS = st.sampled_from(["status", "intent", "subject", "medicationCodeableConcept", "code", "extension",
                           "reasonReference", "bodySite", "orderDetail", "note", "meta", "quantityRatio", "id"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(["MedicationRequest", "ServiceRequest", "NutritionOrder"]),
       fields=st.dictionaries(_FIELDS, _JSON, max_size=5))
def test_any_draft_order_is_answered_or_refused_never_a_server_error(client: TestClient, rtype: str,
                                                                      fields: dict[str, Any]) -> None:
    draft = {"resourceType": rtype, "id": "d1", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{PID}"}, **fields}
    for hook in HOOKS:
        body = order_request(hook, patient(), [draft], selections=["MedicationRequest/d1"])
        r = client.post(URL[hook], json=body)
        assert r.status_code in (200, 400), r.text


@pytest.mark.parametrize("path", [URL["order-select"], URL["order-sign"], URL["order-sign"] + "/feedback"])
def test_browser_clients_get_cors_on_the_order_services(tmp_path: Any, path: str) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, cors_origins="https://sandbox.cds-hooks.org"))
    with TestClient(app) as c:
        r = c.options(path, headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"


def test_fractions_from_a_structured_quantity_and_written_back() -> None:
    from app.orders.radiotherapy import with_fractionation

    draft = rt_draft(per_cgy=None, fractions=None)
    draft["quantityQuantity"] = {"value": 5, "unit": "fractions"}
    fx = read_fractionation(draft)
    assert fx is not None and fx.fractions == 5 and fx.total_gy is None
    updated = with_fractionation(draft, 800, 1)
    assert updated["quantityQuantity"] == {"value": 1, "unit": "fractions"}
    fx = read_fractionation(updated)
    assert fx is not None and fx.fractions == 1
    get_fhir_model_class("ServiceRequest").model_validate(updated)
    draft["quantityQuantity"] = {"value": 20, "unit": "Gy"}  # a dose alone: not a fractionation
    assert read_fractionation(draft) is None


def test_resource_level_limits_the_order_rules(tmp_path: Any) -> None:
    from app.main import create_app
    from tests.conftest import NOW, make_settings

    drafts = [rt_draft(), med_draft("zol", "zoledronic acid 4 MG per 5 ML Injection"), med_draft("m", *MORPHINE)]
    fired = {}
    for level in ("basic", "limited", "enhanced"):
        (tmp_path / level).mkdir()
        app = create_app(make_settings(tmp_path / level, resource_level=level))
        with TestClient(app) as c:
            app.state.runtime.clock = lambda: NOW
            fired[level] = set(by_rule(call(c, "order-sign", patient(), drafts)))
    assert fired["basic"] == {"order-opioid-laxative"}
    assert fired["limited"] == {"order-opioid-laxative", "order-radiotherapy-single-fraction"}
    assert fired["enhanced"] == fired["limited"] | {"order-bone-agent-checks"}
