"""`app/cli/` is a package of small command modules: each registers its own subcommand, the parser is built from
the list of them, and nothing is found through importlib."""

from __future__ import annotations

import argparse
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import app.cli
from app.cli import COMMANDS, build_parser

CLI_DIR = Path(app.cli.__file__).parent


def _command_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1].replace("_", "-")


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.__name__)
def test_each_command_module_registers_its_own_subcommand(module: object) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    module.register(sub)  # type: ignore[attr-defined]
    name = _command_name(module.__name__)  # type: ignore[attr-defined]
    assert list(sub.choices) == [name]
    func = sub.choices[name].get_default("func")
    assert callable(func) and func.__module__ == module.__name__  # type: ignore[attr-defined]


def test_every_module_with_a_register_function_is_a_command() -> None:
    modules = {info.name for info in pkgutil.iter_modules([str(CLI_DIR)])}
    registering = {m for m in modules
                   if any(isinstance(n, ast.FunctionDef) and n.name == "register"
                          for n in ast.parse((CLI_DIR / f"{m}.py").read_text(encoding="utf-8")).body)}
    assert registering == {m.__name__.rsplit(".", 1)[-1] for m in COMMANDS}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [_command_name(m.__name__) for m in COMMANDS]


def test_no_importlib_in_the_cli_or_the_command_code_it_uses() -> None:
    for path in [*CLI_DIR.glob("*.py"), CLI_DIR.parent / "hook_requests.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != "importlib" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "importlib", path
            elif isinstance(node, ast.Name):
                assert node.id != "__import__", path


def test_the_package_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=CLI_DIR.parents[1])
    assert done.returncode == 0, done.stderr
    assert all(_command_name(m.__name__) in done.stdout for m in COMMANDS)
