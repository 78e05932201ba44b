"""constraints.txt pins the runtime install, and the Docker image installs with it (README: reproducible installs)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt pins {req.name} twice"
        pins[name] = Version(specs[0].version)
    return pins


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # The image installs `.[postgres]`: the dependencies plus that extra.
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]]


def _builder_stage() -> list[str]:
    """The Dockerfile's build stage as logical instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ln)
    builders = [s for s in stages if re.match(r"FROM\s+\S+\s+AS\s+builder\b", s[0], re.IGNORECASE)]
    assert builders, "the Dockerfile has no `AS builder` stage"
    return builders[0]


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for req in _runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}")


def test_constraints_do_not_pin_the_project_itself() -> None:
    assert "mbc-cds" not in _pins()


def test_dockerfile_copies_constraints_into_the_build_stage_before_installing() -> None:
    stage = _builder_stage()
    copies = [i for i, ln in enumerate(stage)
              if ln.upper().startswith("COPY ") and "constraints.txt" in shlex.split(ln)[1:-1]
              and "--from" not in ln]
    installs = [i for i, ln in enumerate(stage) if re.search(r"\bpip install\b", ln) and ".whl" in ln]
    assert copies, "the build stage does not COPY constraints.txt"
    assert installs, "the build stage does not pip install the wheel"
    assert min(copies) < min(installs), "constraints.txt is copied after the install that needs it"


@pytest.mark.parametrize("flag", ["-c", "--constraint"])
def test_flag_spellings_are_recognised(flag: str) -> None:
    assert _uses_constraints(f"RUN pip install {flag} constraints.txt x.whl")
    assert not _uses_constraints("RUN pip install x.whl")


def _uses_constraints(instruction: str) -> bool:
    for command in instruction.split("&&"):
        words = shlex.split(command.replace("RUN ", "", 1))
        if "pip" not in words or "install" not in words:
            continue
        for flag, value in zip(words, [*words[1:], ""], strict=True):
            if flag in ("-c", "--constraint") and value == "constraints.txt":
                return True
            if flag in ("-cconstraints.txt", "--constraint=constraints.txt"):
                return True
    return False


def test_dockerfile_installs_the_service_with_the_constraints() -> None:
    stage = _builder_stage()
    wheel_installs = [ln for ln in stage if re.search(r"\bpip install\b", ln) and ".whl" in ln]
    assert wheel_installs and all(_uses_constraints(ln) for ln in wheel_installs), (
        "the wheel is installed without -c constraints.txt")
