"""Hook requests built from one patient's Bundle, as an EHR would send them: the resources as a FHIR server
stores them, a prefetch answering the service's templates, the request body. The viewer's demo routes,
`mbc-cds hook` and the tests use them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from cds_hooks.hooks import ORDER_HOOKS
from cds_hooks.prefetch import resource_type_of

DEFAULT_USER = "Practitioner/example"


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle as a FHIR server would store them: a resource without an id gets the id of
    its `urn:uuid:` fullUrl (or of its PUT url), and `urn:uuid:` references are rewritten to `Type/id`.
    Works for transaction, batch, collection and searchset Bundles; the input is not modified."""
    if bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    resources: list[dict[str, Any]] = []
    ref_map: dict[str, str] = {}
    for entry in entries:
        res = orjson.loads(orjson.dumps(entry["resource"]))  # deep copy
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            continue
        full_url = entry.get("fullUrl")
        if not isinstance(full_url, str):
            full_url = ""
        if not res.get("id"):
            request = entry.get("request")
            if not isinstance(request, dict):
                request = {}
            url = str(request.get("url") or "")
            if request.get("method") == "PUT" and url.startswith(f"{rtype}/") and "?" not in url:
                res["id"] = url.split("/", 1)[1]
            elif full_url.startswith("urn:uuid:"):
                res["id"] = full_url[len("urn:uuid:"):]
        if full_url and res.get("id"):
            ref_map[full_url] = f"{rtype}/{res['id']}"
        resources.append(res)
    if ref_map:
        resources = [_rewrite_refs(r, ref_map) for r in resources]
    return resources


def _rewrite_refs(value: Any, ref_map: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v in ref_map:
                out[k] = ref_map[v]
            else:
                out[k] = _rewrite_refs(v, ref_map)
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v, ref_map) for v in value]
    return value


def prefetch_from_resources(resources: Iterable[Mapping[str, Any]], templates: Mapping[str, str],
                            patient_id: str) -> dict[str, Any]:
    """One prefetch value per discovery key, as an EHR answers the templates: a read template
    (`Patient/{{context.patientId}}`) gets the resource or null, a search template a searchset Bundle."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(str(r.get("resourceType")), []).append(dict(r))
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        rtype = resource_type_of(template)
        items = by_type.get(rtype, [])
        if "?" not in template and "/" in template.split("?", 1)[0]:  # a read
            match = [r for r in items if r.get("id") == patient_id] if rtype == "Patient" else items[:1]
            prefetch[key] = match[0] if match else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                             "entry": [{"resource": r, "search": {"mode": "match"}} for r in items]}
    return prefetch


def patient_id_of(resources: Iterable[Mapping[str, Any]]) -> str:
    for r in resources:
        if r.get("resourceType") == "Patient" and r.get("id"):
            return str(r["id"])
    raise ValueError("no Patient with an id in the Bundle")


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
