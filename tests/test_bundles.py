"""One reading of a Bundle (app.bundles) for `mbc-cds evaluate`, the viewer's hook requests and the worklist: a
transaction Bundle as a client posts it (the Patient PUT by id, every other resource POSTed without one, all
references `urn:uuid`) gives the same cards every way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.bundles import bundle_resources, rewrite_references
from app.cli import main as cli_main
from app.hook_requests import demo_request_for_bundle
from app.samples import sample_bundle
from app.service.factory import build_evaluator, build_handler
from app.settings import Settings
from app.worklist.core import HOOK_INSTANCE
from app.worklist.readers import bundle_records
from cds_hooks.models import HookRequest
from tests.conftest import NOW

SETTINGS = Settings(require_jwt=False)


def client_transaction(sample: str) -> dict[str, Any]:
    """The sample as a client builds a transaction: the Patient PUT with its id, the other resources POSTed
    without ids, every reference the `urn:uuid` fullUrl of its target."""
    resources = bundle_resources(sample_bundle(sample, now=NOW))
    urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['id'])}"
            for r in resources}
    entries = []
    for r in resources:
        full_url = urns[f"{r['resourceType']}/{r['id']}"]
        rewrite_references(r, urns)
        if r["resourceType"] == "Patient":
            request = {"method": "PUT", "url": f"Patient/{r['id']}"}
        else:
            del r["id"]
            request = {"method": "POST", "url": r["resourceType"]}
        entries.append({"fullUrl": full_url, "resource": r, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def test_evaluate_gives_the_viewers_cards_for_a_transaction_bundle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], http: httpx.AsyncClient) -> None:
    bundle = client_transaction("mbc-demo-01")
    assert all("id" not in e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient")
    assert any(e["resource"].get("subject", {}).get("reference", "").startswith("urn:uuid:") for e in bundle["entry"])
    path = tmp_path / "transaction.json"
    path.write_bytes(orjson.dumps(bundle))
    assert cli_main(["evaluate", str(path), "--now", NOW.isoformat()]) == 0
    cli_cards = orjson.loads(capsys.readouterr().out)["cards"]

    handler = build_handler(SETTINGS, http)
    request = HookRequest.model_validate(demo_request_for_bundle(bundle, handler.evaluator.templates,
                                                                 hook_instance="cli"))
    viewer_cards = (await handler.handle(request, NOW)).cards
    assert cli_cards, "a patient with metastatic breast cancer gets cards"
    assert cli_cards == orjson.loads(orjson.dumps(viewer_cards))

    # The raw entries (what `evaluate` read before): resources without ids, evidence that names none.
    pid = request.context["patientId"]
    raw = build_evaluator(SETTINGS).evaluate([e["resource"] for e in bundle["entry"]], pid, NOW,
                                             hook_instance="cli")
    assert raw.cards != viewer_cards


def test_the_worklist_reads_a_transaction_bundle_as_the_hook_does() -> None:
    bundle = client_transaction("mbc-demo-03")
    stored = bundle_resources(bundle)
    records = [orjson.loads(line) for _, line in bundle_records(orjson.dumps(bundle))]
    key = itemgetter("resourceType", "id")
    assert sorted(records, key=key) == sorted(stored, key=key)
    evaluator = build_evaluator(SETTINGS)
    pid = next(r["id"] for r in stored if r["resourceType"] == "Patient")
    assert evaluator.evaluate(records, pid, NOW, hook_instance=HOOK_INSTANCE).cards == \
        evaluator.evaluate(stored, pid, NOW, hook_instance=HOOK_INSTANCE).cards
