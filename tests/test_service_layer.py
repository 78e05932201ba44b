"""The one service layer: the factory's offline evaluator and its hook handler give the same cards for the same
record, and the evaluator needs no HTTP client."""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx

from app.bundles import bundle_resources, patient_id_of
from app.hook_requests import patient_view_request, prefetch_from_resources
from app.samples import draft_orders, sample_bundle
from app.service import evaluate, factory
from app.service.factory import build_evaluator, build_handler
from app.settings import Settings
from cds_hooks.draft_orders import parse_draft_orders
from cds_hooks.models import HookRequest

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SAMPLES = ("mbc-demo-01", "mbc-demo-03", "mbc-demo-05")
SETTINGS = Settings(require_jwt=False)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def _record(sample: str) -> tuple[list[dict[str, object]], str]:
    resources = bundle_resources(sample_bundle(sample, now=NOW))
    return resources, patient_id_of(resources)


@pytest.mark.parametrize("sample", SAMPLES)
async def test_patient_view_offline_and_through_the_handler_give_the_same_cards(
        sample: str, http: httpx.AsyncClient) -> None:
    resources, pid = _record(sample)
    handler = build_handler(SETTINGS, http)
    offline = build_evaluator(SETTINGS)
    prefetch = prefetch_from_resources(resources, handler.evaluator.templates, pid)
    request = HookRequest.model_validate(patient_view_request(pid, prefetch=prefetch, hook_instance="same-record"))
    with respx.mock(assert_all_mocked=True) as router:  # everything is in the prefetch: nothing may be read
        handled = await handler.handle(request, NOW)
    assert not router.calls
    direct = offline.evaluate(resources, pid, NOW, server=False, hook_instance="same-record")
    assert handled.cards, "a sample patient with metastatic breast cancer gets cards"
    assert handled.cards == direct.cards
    assert handled.rule_ids == direct.rule_ids


async def test_order_sign_offline_and_through_the_handler_give_the_same_cards(http: httpx.AsyncClient) -> None:
    resources, pid = _record("mbc-demo-01")
    drafts = draft_orders("morphine-15mg-tablet", pid, now=NOW)
    handler = build_handler(SETTINGS, http)
    templates = handler.evaluator.templates
    request = HookRequest.model_validate(patient_view_request(
        pid, hook="order-sign", draft_orders=drafts, prefetch=prefetch_from_resources(resources, templates, pid),
        hook_instance="same-drafts"))
    handled = await handler.handle(request, NOW)
    direct = build_evaluator(SETTINGS).evaluate_orders("order-sign", parse_draft_orders(drafts, None), resources,
                                                       pid, NOW, server=False, hook_instance="same-drafts")
    assert handled.cards == direct.cards
    assert handled.rule_ids == direct.rule_ids


def test_the_handler_shares_the_terminology_and_knowledge_it_is_given(http: httpx.AsyncClient) -> None:
    from app.service.knowledge import load_knowledge
    from terminology import get_terminology

    terminology, knowledge = get_terminology(), load_knowledge()
    handler = build_handler(SETTINGS, http, terminology=terminology, knowledge=knowledge)
    assert handler.evaluator.terminology is terminology
    knowledge_rules = {id(r) for r in knowledge.rules}
    assert handler.evaluator.engine.rules
    assert all(id(r) in knowledge_rules for r in handler.evaluator.engine.rules)


def _imported_modules(module: object) -> set[str]:
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_evaluator_is_pure() -> None:
    imported = _imported_modules(evaluate)
    assert "httpx" not in imported and "cds_hooks.outbound" not in imported
    assert "PrefetchResolver" not in inspect.getsource(evaluate)
    assert "resolver" not in vars(build_evaluator(SETTINGS))


def test_only_the_factory_builds_evaluators_and_handlers() -> None:
    """Routes, CLI, worklist, viewer, tests and benchmarks all go through app/service/factory.py."""
    root = Path(__file__).resolve().parents[1]
    builders: set[str] = set()
    for folder in ("app", "bench", "tests"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id in {"RecordEvaluator", "HookHandler"}:
                    builders.add(path.relative_to(root).as_posix())
    assert builders == {"app/service/factory.py"}
    assert inspect.getsourcefile(factory) == str(root / "app" / "service" / "factory.py")
