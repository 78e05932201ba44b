"""A FHIR Bundle's resources as a FHIR server stores them, for every reader of Bundles in the service: the hook
requests the viewer and `mbc-cds hook` build, `mbc-cds evaluate`, `mbc-cds load` and the worklist readers. One
reading, so that they cannot disagree on a transaction Bundle with `urn:uuid` references."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

URN_UUID = "urn:uuid:"


def bundle_resources(bundle: Mapping[str, Any], *, copy: bool = True) -> list[dict[str, Any]]:
    """The resources of a Bundle (any type: transaction, batch, collection, searchset) as a server would store
    them: a resource without an id takes the id of its PUT url, else of its `urn:uuid:` fullUrl, and references
    to another entry's fullUrl become `Type/id`. Entries without a typed resource are left out. With `copy`
    False the Bundle's own resources are changed in place (a caller that parsed it for this alone saves a copy).
    """
    if bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    resources: list[dict[str, Any]] = []
    refs: dict[str, str] = {}
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        res: dict[str, Any] = orjson.loads(orjson.dumps(entry["resource"])) if copy else entry["resource"]
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
            elif full_url.startswith(URN_UUID):
                res["id"] = full_url.removeprefix(URN_UUID)
        if full_url and res.get("id"):
            refs[full_url] = f"{rtype}/{res['id']}"
        resources.append(res)
    if refs:
        for res in resources:
            rewrite_references(res, refs)
    return resources


def rewrite_references(node: Any, refs: Mapping[str, str]) -> None:
    """Replace, in place, every `reference` that is a key of `refs` by its value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in refs:
                node[key] = refs[value]
            elif isinstance(value, dict | list):
                rewrite_references(value, refs)
    elif isinstance(node, list):
        for item in node:
            rewrite_references(item, refs)


def patient_id_of(resources: Iterable[Mapping[str, Any]]) -> str:
    """The id of the first Patient among `resources`; ValueError when there is none."""
    for r in resources:
        if r.get("resourceType") == "Patient" and r.get("id"):
            return str(r["id"])
    raise ValueError("no Patient with an id in the Bundle")
