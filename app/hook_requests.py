"""Hook requests built from one patient's Bundle, as an EHR would send them: a prefetch answering the service's
keys from the Bundle's resources (read as a FHIR server stores them, app.bundles), the request body. The viewer's
demo routes, `mbc-cds hook` and the tests use them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from app.bundles import bundle_resources, patient_id_of
from app.data_requirements import declared
from cds_hooks.hooks import ORDER_HOOKS

DEFAULT_USER = "Practitioner/example"


def prefetch_from_resources(resources: Iterable[Mapping[str, Any]], keys: Iterable[str],
                            patient_id: str) -> dict[str, Any]:
    """One prefetch value per key (a service's discovery prefetch: its templates' keys), as an EHR answers them,
    each key as the data declaration defines it: the read of the patient gets the Patient or null, a search a
    searchset Bundle of the resources of its type."""
    searches = {search.key: search for search in declared().prefetch}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(str(r.get("resourceType")), []).append(dict(r))
    prefetch: dict[str, Any] = {}
    for key in keys:
        search = searches[key]
        items = by_type.get(search.type, [])
        if search.patient_param is None:  # the patient itself, read by id
            prefetch[key] = next((r for r in items if r.get("id") == patient_id), None)
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                             "entry": [{"resource": r, "search": {"mode": "match"}} for r in items]}
    return prefetch


def patient_view_request(patient_id: str, *, fhir_server: str | None = None, token: str | None = None,
                         prefetch: dict[str, Any] | None = None, user: str = DEFAULT_USER,
                         hook_instance: str | None = None, hook: str = "patient-view",
                         draft_orders: dict[str, Any] | None = None,
                         selections: list[str] | None = None) -> dict[str, Any]:
    """A hook request body: patient-view, or order-select / order-sign with `draft_orders` (a Bundle) and, for
    order-select, the `selections` (default: every draft with an id)."""
    body: dict[str, Any] = {"hook": hook, "hookInstance": hook_instance or str(uuid.uuid4())}
    if fhir_server:
        body["fhirServer"] = fhir_server
        if token:
            body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": "mbc-cds-cli"}
    body["context"] = {"patientId": patient_id, "userId": user}
    if hook in ORDER_HOOKS:
        drafts = draft_orders or {"resourceType": "Bundle", "type": "collection", "entry": []}
        body["context"]["draftOrders"] = drafts
        if hook == "order-select":
            body["context"]["selections"] = selections if selections is not None else [
                f"{r['resourceType']}/{r['id']}" for r in bundle_resources(drafts) if r.get("id")]
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def demo_request_for_bundle(bundle: Mapping[str, Any], templates: Mapping[str, str],
                            hook_instance: str | None = None) -> dict[str, Any]:
    """A complete patient-view request (prefetch for every discovery key) for one patient's Bundle."""
    resources = bundle_resources(bundle)
    pid = patient_id_of(resources)
    return patient_view_request(pid, prefetch=prefetch_from_resources(resources, templates, pid),
                                hook_instance=hook_instance)
