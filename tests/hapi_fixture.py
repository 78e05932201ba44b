"""Session fixture: a real HAPI FHIR JPA server (R4, H2 in memory) built from tests/hapi-server.

tests/conftest.py makes it available to every test: a test (or fixture) parameter named ``hapi_fhir_server``
is the FHIR base URL, e.g. ``http://127.0.0.1:41234/fhir``.

tests/conftest.py starts the build and the server in the background as soon as collection shows a test that
uses the fixture; the fixture then waits for it. The jar is built with ``mvn -q -B package`` unless it is newer
than the module's
sources (Maven keeps the downloaded HAPI artifacts in ~/.m2, so later builds need no network), starts
``java -jar`` on a free port and waits for ``/fhir/metadata``; the server is stopped at the end of the session.
It keeps its data for the whole session: tests use their own resource ids or tolerate what others loaded.
``MBC_CDS_TEST_HAPI_URL=http://127.0.0.1:8090/fhir`` uses a HAPI server that is already running instead (one
started by hand with ``java -jar tests/hapi-server/target/mbc-cds-test-hapi.jar --server.port=8090``, or the
docker-compose one) and skips the build and the start.

Without Java 17+ or Maven, or when the build or the start fails, the HAPI tests are skipped with the reason;
under CI (``CI=true``) they fail instead, so that CI never passes with HAPI silently left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

MODULE_DIR = Path(__file__).parent / "hapi-server"
JAR = MODULE_DIR / "target" / "mbc-cds-test-hapi.jar"
MIN_JAVA = 17
BUILD_TIMEOUT_S = float(os.environ.get("MBC_CDS_TEST_HAPI_BUILD_TIMEOUT", "1500"))
STARTUP_TIMEOUT_S = float(os.environ.get("MBC_CDS_TEST_HAPI_STARTUP_TIMEOUT", "400"))
# C1 only: HAPI's start is mostly one-off class loading and Spring wiring, which the C2 compiler slows down on
# two busy cores; the tests send a few hundred requests, far too few to profit from C2.
JVM_OPTIONS = ("-Xmx1g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _give_up(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"HAPI FHIR tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (`openjdk version "17.0.15"` -> 17, `"1.8.0_402"` -> 8)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def missing_tools() -> str | None:
    java = shutil.which("java")
    if java is None:
        return "java is not installed: the HAPI FHIR tests need Java 17+ and Maven (apt-get install " \
               "default-jdk-headless maven)"
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        return f"java {major or '?'} is too old: HAPI FHIR 8 needs Java {MIN_JAVA}+"
    if not JAR.exists() and shutil.which("mvn") is None:
        return "mvn is not installed: the HAPI FHIR tests build tests/hapi-server with Maven (apt-get install maven)"
    return None


def sources_newer_than_jar() -> bool:
    if not JAR.exists():
        return True
    built = JAR.stat().st_mtime
    sources = [MODULE_DIR / "pom.xml", *(p for p in (MODULE_DIR / "src").rglob("*") if p.is_file())]
    return any(p.stat().st_mtime > built for p in sources)


def build_jar() -> None:
    """`mvn package` when the jar is missing or older than its sources; raises RuntimeError on failure."""
    if not sources_newer_than_jar():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("the jar is out of date and mvn is not installed")
    started = time.monotonic()
    try:
        done = subprocess.run([mvn, "-q", "-B", "package", "-DskipTests"], cwd=MODULE_DIR, capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"mvn package did not finish within {BUILD_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0 or not JAR.exists():
        raise RuntimeError(f"mvn package failed (exit {done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
    print(f"built {JAR.name} in {time.monotonic() - started:.0f} s")


def _log_tail(log_file: Path) -> str:
    try:
        return log_file.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def wait_for_metadata(base: str, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"HAPI exited with {proc.returncode} before answering; log: {_log_tail(log_file)}")
        try:
            resp = httpx.get(f"{base}/metadata", headers={"Accept": "application/fhir+json"}, timeout=30)
            if resp.status_code == 200 and resp.json().get("resourceType") == "CapabilityStatement":
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"HAPI did not answer /metadata within {STARTUP_TIMEOUT_S:.0f} s; "
                               f"log: {_log_tail(log_file)}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)  # a JVM still starting up may not act on SIGTERM
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class _Launch:
    """One HAPI server per pytest session, started as soon as collection shows a test that needs it
    (`start_early`, from tests/conftest.py), so that its minute-long start overlaps the tests before it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.log_file: Path | None = None
        self.error: str | None = None
        self.started = 0.0

    def start(self) -> None:
        with self.lock:
            if self.thread is None:
                log_dir = Path(tempfile.mkdtemp(prefix="mbc-cds-hapi-"))
                self.thread = threading.Thread(target=self._build_and_start, args=(log_dir,), daemon=True,
                                               name="hapi-fhir-start")
                self.thread.start()

    def _build_and_start(self, log_dir: Path) -> None:
        reason = missing_tools()
        if reason:
            self.error = reason
            return
        try:
            build_jar()
        except RuntimeError as exc:
            self.error = f"could not build tests/hapi-server: {exc}"
            return
        from tests.served_app import free_port  # not at import time: served_app imports tests.conftest

        port = free_port()
        self.base = f"http://127.0.0.1:{port}/fhir"
        self.log_file = log_dir / "hapi-server.log"
        self.started = time.monotonic()
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                ["java", *JVM_OPTIONS, "-jar", str(JAR), f"--server.port={port}", "--server.address=127.0.0.1"],
                cwd=MODULE_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> str:
        assert self.thread is not None
        self.thread.join()
        if self.error:
            raise RuntimeError(self.error)
        assert self.proc is not None and self.log_file is not None
        wait_for_metadata(self.base, self.proc, self.log_file)
        print(f"HAPI FHIR (pid {self.proc.pid}) answered {self.base}/metadata "
              f"{time.monotonic() - self.started:.0f} s after its start")
        return self.base

    def stop(self) -> None:
        with self.lock:
            thread = self.thread
        if thread is not None:
            thread.join()
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
            if self.log_file is not None and not self.error:
                shutil.rmtree(self.log_file.parent, ignore_errors=True)


_LAUNCH = _Launch()


def start_early() -> None:
    """Build and start the server in the background (no-op with MBC_CDS_TEST_HAPI_URL)."""
    if not os.environ.get("MBC_CDS_TEST_HAPI_URL", "").strip():
        _LAUNCH.start()


def stop_server() -> None:
    _LAUNCH.stop()


@pytest.fixture(scope="session")
def hapi_fhir_server() -> Iterator[str]:
    running = os.environ.get("MBC_CDS_TEST_HAPI_URL", "").strip().rstrip("/")
    if running:
        yield running
        return
    _LAUNCH.start()
    try:
        base = _LAUNCH.wait_ready()
    except RuntimeError as exc:
        _LAUNCH.stop()
        _give_up(str(exc))
    try:
        yield base
    finally:
        _LAUNCH.stop()
