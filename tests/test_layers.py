"""The layering the design promises, checked on the source: clinical code imports no engine, order, HTTP or
protocol code; the engine takes from clinical code only the types it applies rules to, and is handed everything
clinical else (the vocabulary and its card frame); the protocol package knows nothing of the app; rule ids live in
the PlanDefinitions, not in the engine, the worklist or the routes."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from app.service.knowledge import load_knowledge

ROOT = Path(__file__).resolve().parent.parent
# What clinical code must not reach: the engine and order layers above it, HTTP and the CDS Hooks protocol.
CLINICAL_FORBIDDEN = ("app.engine", "app.orders", "app.routes", "app.service", "app.hook_requests", "app.runtime",
                      "app.main", "app.worklist", "app.store", "cds_hooks", "fastapi", "starlette", "httpx")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, at any depth (TYPE_CHECKING blocks and function bodies included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def _hits(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def test_clinical_code_imports_nothing_above_it() -> None:
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in _modules("app/clinical")
             for line, name in _imports(p) if _hits(name, CLINICAL_FORBIDDEN)]
    assert not found, found


def test_importing_clinical_code_loads_no_engine_orders_or_http() -> None:
    """The same at run time, through every indirect import."""
    assert _loaded_when_importing("app/clinical", CLINICAL_FORBIDDEN) == ""


def _loaded_when_importing(package: str, forbidden: tuple[str, ...]) -> str:
    """The forbidden modules a fresh interpreter holds after importing every module of `package`."""
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in _modules(package)]
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            f"bad = [m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {forbidden!r})]\n"
            "print(' '.join(sorted(bad)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_protocol_package_imports_nothing_of_the_app() -> None:
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in _modules("cds_hooks")
             for line, name in _imports(p) if _hits(name, ("app", "plandefinitions", "terminology"))]
    assert not found, found


def test_no_rule_id_is_written_in_the_engine_worklist_routes_or_service_layer() -> None:
    """Tiers, display order, links and the data-incomplete card come from PlanDefinition data: adding or renaming a
    rule needs no change here. A rule-id prefix ("emergency-") counts too: tiers by name are what this forbids."""
    ids = {r.id for r in load_knowledge().rules}
    files = [*_modules("app/engine"), *_modules("app/worklist"), *_modules("app/routes"), *_modules("app/service")]
    found = [f"{p.relative_to(ROOT)}:{node.lineno} {node.value!r}" for p in files
             for node in ast.walk(ast.parse(p.read_text(), str(p)))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and (node.value in ids or (node.value.endswith("-") and any(i.startswith(node.value) for i in ids)))]
    assert not found, found


def test_the_engine_imports_nothing_of_the_order_layer_or_the_service() -> None:
    """The engine sits under app.orders and app.service: it is handed its vocabulary, nothing registers into it."""
    above = ("app.orders", "app.service", "app.routes", "app.worklist", "app.cli", "app.runtime", "app.main")
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in _modules("app/engine")
             for line, name in _imports(p) if _hits(name, above)]
    assert not found, found
    assert _loaded_when_importing("app/engine", above) == ""


# What the engine may take from app.clinical: the evaluation the rules are applied to and the evidence they return
# (its input and output, named in every condition's signature). Everything else clinical (predicates, card values,
# the overview, scope, draft reasons and safety) comes in with the vocabulary.
ENGINE_CLINICAL_TYPES = {"app.clinical.evaluation": frozenset({"Evaluation", "Evidence"})}


def test_the_engine_imports_nothing_clinical_but_the_evaluation_and_evidence_types() -> None:
    found: list[str] = []
    for path in _modules("app/engine"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}" for a in node.names
                          if _hits(a.name, ("app.clinical",))]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and _hits(node.module, ("app.clinical",)):
                allowed = ENGINE_CLINICAL_TYPES.get(node.module, frozenset())
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                          for a in node.names if a.name not in allowed]
    assert not found, found


def test_the_engine_names_no_predicate_or_priority() -> None:
    """No predicate or priority name is written in app/engine, and no function of the vocabulary (card values
    included) is imported there: a new predicate, priority or card value needs no change to the engine. (Template
    keys are not checked by name: "draft" is a FHIR status.)"""
    import importlib

    from app.service.knowledge import SERVICE_VOCABULARY

    vocabulary = SERVICE_VOCABULARY
    names = {*vocabulary.predicates, *vocabulary.priorities}
    functions = {id(n.fn) for n in vocabulary.predicates.values()} | {id(f) for f in vocabulary.priorities.values()} \
        | {id(f) for f in vocabulary.values.values()}
    written: list[str] = []
    imported: list[str] = []
    for path in _modules("app/engine"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                written.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if node.module == "app.clinical.predicates" or \
                            id(getattr(module, alias.name, None)) in functions:
                        imported.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}")
    assert not written, written
    assert not imported, imported


def test_the_engine_is_extended_through_its_public_hooks_only() -> None:
    """A hook's engine (app.orders) overrides Engine's public hooks and imports no private name of the engine: the
    snooze path, the card layout and the draft-safety gate stay one."""
    from app.engine.engine import Engine
    from app.orders.engine import OrderEngine

    private = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in _modules("app")
               if not p.is_relative_to(ROOT / "app" / "engine")
               for line, name in _imports(p)
               if name.startswith("app.engine.") and name.rsplit(".", 1)[1].startswith("_")]
    assert not private, private
    overridden = [n for n in vars(OrderEngine) if n.startswith("_") and not n.startswith("__") and hasattr(Engine, n)]
    assert not overridden, overridden
    assert {"fires", "values_for", "offer", "recommended"} <= set(vars(OrderEngine))
