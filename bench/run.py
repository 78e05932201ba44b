"""Benchmark: the mbc-cds service against a floor (a bare FastAPI app that only parses the body), same run.

    python bench/run.py [--quick] [--json] [--out FILE] [--launcher mbc-cds|uvicorn] [--duration S]

Both servers run as users run them: subprocesses `mbc-cds serve --port P --workers N` (or `uvicorn app.main:app
--workers N`) with the default settings except MBC_CDS_REQUIRE_JWT=false and a fresh SQLite file (audit rows
on), and `uvicorn floor_app:app --app-dir bench --workers N` for the floor, both at uvicorn's default log level
(info, access log on). Requests go over loopback:

- latency: one httpx.Client (keep-alive), sequential, warm-up then N requests per case: p50 / p95 / p99 (ms),
  and the server's CPU per hook (all its processes and threads, from /proc);
- throughput: 32 concurrent keep-alive connections for a fixed duration (hooks/s) with 1 and 2 uvicorn workers,
  driven by a plain asyncio-streams HTTP/1.1 client (httpx.AsyncClient saturates long before the servers do on
  this machine; `--load-client httpx` uses it anyway);
- peak RSS: VmHWM of the server process and its children (/proc), summed;
- cold start: process start to the first answered hook (200), median of 3.

Cases: a typical patient (40 resources), the same patient at order-select (a different draft order on every
request: nothing reused) and at order-sign (the drafts order-select saw: its evaluation reused), a heavy one
(typical + 3,000 vital signs) and a sweep of prefetch sizes (100, 1,000, 5,000, 20,000 resources). The table
gives project, floor and project/floor per row; `--json` prints
the same as JSON (progress goes to stderr). The load generator shares the machine's cores with the servers: its
CPU use and the servers' are reported with the throughput numbers, and the load average with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.patients import cases as build_cases  # noqa: E402

SERVICE_PATH = "/cds-services/mbc-palliative-care"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
VENV_BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            except OSError:
                continue
            out.extend(int(x) for x in text.split())
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICK


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return float("nan")


def _child_env() -> dict[str, str]:
    """The environment of the servers and of `mbc-cds migrate`: no MBC_CDS_* setting of the caller, and this
    checkout's code first on the path (the venv's `mbc-cds` would otherwise import the editable install, which
    may be another worktree)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBC_CDS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Server:
    kind: str                 # "project" | "floor"
    workers: int
    workdir: Path
    launcher: str = "mbc-cds"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_path: Path | None = None
    db_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SERVICE_PATH}"

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def command(self) -> list[str]:
        host = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        if self.kind == "floor":
            return [str(VENV_BIN / "uvicorn"), "floor_app:app", "--app-dir", str(BENCH_DIR), *host,
                    "--log-level", "info", "--proxy-headers"]
        if self.launcher == "uvicorn":
            return [str(VENV_BIN / "uvicorn"), "app.main:app", *host, "--log-level", "info", "--proxy-headers"]
        return [str(VENV_BIN / "mbc-cds"), "serve", *host]

    def env(self) -> dict[str, str]:
        env = _child_env()
        if self.kind == "project":
            env["MBC_CDS_REQUIRE_JWT"] = "false"
            env["MBC_CDS_DATABASE_URL"] = f"sqlite:///{self.db_path}"
        return env

    def start(self, tag: str, template_db: Path | None = None) -> None:
        self.log_path = self.workdir / f"{self.kind}-{tag}.log"
        if self.kind == "project":
            self.db_path = self.workdir / f"{self.kind}-{tag}.db"
            if template_db is not None:
                shutil.copyfile(template_db, self.db_path)
        logf = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env(), stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()

    def wait_first_hook(self, body: bytes, timeout: float = 90.0) -> float:
        """Poll with the hook until it answers 200; seconds from process start."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        with httpx.Client(headers=HEADERS, timeout=30) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} server exited ({self.proc.returncode}); see {self.log_path}")
                try:
                    r = client.post(self.url, content=body)
                    if r.status_code == 200:
                        return time.perf_counter() - self.started_at
                    raise RuntimeError(f"{self.kind} answered {r.status_code}: {r.text[:300]}")
                except httpx.TransportError:
                    time.sleep(0.01)
        raise RuntimeError(f"{self.kind} server did not answer within {timeout} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(process_tree(self.proc.pid))

    def rss_kb(self) -> dict[str, int]:
        """Peak (VmHWM) and current (VmRSS) resident memory of the process tree, summed, and the largest."""
        assert self.proc is not None
        pids = process_tree(self.proc.pid)
        hwm = [_status_kb(p, "VmHWM") for p in pids]
        rss = [_status_kb(p, "VmRSS") for p in pids]
        return {"processes": len(pids), "peak_sum_kb": sum(hwm), "peak_max_kb": max(hwm or [0]),
                "rss_sum_kb": sum(rss)}

    def stop(self) -> None:
        if self.proc is None:
            return
        tree = process_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in tree[1:]:  # workers that outlived the supervisor (should not happen)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


def migrated_template(workdir: Path) -> Path:
    """An empty SQLite database at the latest schema (the documented `mbc-cds migrate` step)."""
    path = workdir / "template.db"
    subprocess.run([str(VENV_BIN / "mbc-cds"), "migrate", "--database-url", f"sqlite:///{path}"], cwd=workdir,
                   env=_child_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


# ----------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": percentile(ms, 0.50), "p95": percentile(ms, 0.95), "p99": percentile(ms, 0.99),
            "mean": statistics.fmean(ms) if ms else float("nan"), "min": min(ms) if ms else float("nan")}


def sequential(client: httpx.Client, server: Server, body: bytes, warmup: int, n: int,
               max_seconds: float, path: str = SERVICE_PATH,
               variants: list[bytes] | None = None) -> tuple[dict[str, float], bytes]:
    """Warm-up, then up to n requests one after the other; latency percentiles and the server's CPU per hook
    (all its processes and threads, the audit writer included). With `variants`, request i sends variant i
    (a different draft order on each order-select click)."""
    url = server.url_for(path)
    last = b""
    for i in range(warmup):
        r = client.post(url, content=variants[-1 - i % len(variants)] if variants else body)
        r.raise_for_status()
    time.sleep(0.3)  # let background work of the warm-up (audit rows) finish
    times: list[float] = []
    cpu0 = server.cpu_seconds()
    deadline = time.perf_counter() + max_seconds
    for i in range(n):
        payload = variants[i % len(variants)] if variants else body
        t0 = time.perf_counter()
        r = client.post(url, content=payload)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
        last = r.content
        if time.perf_counter() > deadline and len(times) >= 10:
            break
    time.sleep(0.3)
    stats = summarize(times)
    stats["server_cpu_ms_per_hook"] = (server.cpu_seconds() - cpu0) * 1000 / len(times)
    return stats, last


async def _load_httpx(url: str, body: bytes, concurrency: int, t_count: float, t_end: float,
                     stats: dict[str, Any]) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=HEADERS) as client:

        async def worker() -> None:
            while (t0 := time.perf_counter()) < t_end:
                try:
                    good = (await client.post(url, content=body)).status_code == 200
                except httpx.HTTPError:
                    good = False
                _count(stats, good, t0, time.perf_counter(), t_count, t_end)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _load_raw(url: str, body: bytes, concurrency: int, t_count: float, t_end: float,
                    stats: dict[str, Any]) -> None:
    """HTTP/1.1 keep-alive over asyncio streams: one connection per concurrent request, no client library."""
    parts = httpx.URL(url)
    host, port = parts.host, parts.port or 80
    request = (f"POST {parts.raw_path.decode()} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nAccept: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (t0 := time.perf_counter()) < t_end:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
                assert reader is not None
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = None
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length is None:
                    raise RuntimeError("response without Content-Length")
                await reader.readexactly(length)
                good = head[9:12] == b"200"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, RuntimeError, ValueError):
                good = False
                if writer is not None:
                    writer.close()
                reader = writer = None
            _count(stats, good, t0, time.perf_counter(), t_count, t_end)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _count(stats: dict[str, Any], good: bool, t0: float, t1: float, t_count: float, t_end: float) -> None:
    if t_count <= t1 <= t_end:
        if good:
            stats["ok"] += 1
            stats["lat"].append((t1 - t0) * 1000)
        else:
            stats["errors"] += 1
    if "cpu0" not in stats and t1 >= t_count:
        stats["cpu0"] = (time.process_time(), t1)


async def _load(url: str, body: bytes, concurrency: int, duration: float, warmup: float,
                client: str) -> dict[str, Any]:
    stats: dict[str, Any] = {"ok": 0, "errors": 0, "lat": []}
    t_count = time.perf_counter() + warmup
    t_end = t_count + duration
    load = _load_raw if client == "raw" else _load_httpx
    await load(url, body, concurrency, t_count, t_end, stats)
    cpu0, wall0 = stats.get("cpu0", (time.process_time(), time.perf_counter()))
    wall = time.perf_counter() - wall0
    lat = stats["lat"]
    return {"hooks_per_s": stats["ok"] / duration, "ok": stats["ok"], "errors": stats["errors"],
            "concurrency": concurrency, "duration_s": duration, "client": client,
            "latency_p50_ms": percentile(lat, 0.5), "latency_p99_ms": percentile(lat, 0.99),
            "client_cpu_cores": (time.process_time() - cpu0) / wall if wall > 0 else float("nan")}


def throughput(url: str, body: bytes, concurrency: int, duration: float, warmup: float,
               client: str = "raw") -> dict[str, Any]:
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_load(url, body, concurrency, duration, warmup, client))


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    n = len(xs)
    if n < 2:
        return {"slope_ms_per_1000": float("nan"), "intercept_ms": float("nan"), "r2": float("nan")}
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"slope_ms_per_1000": slope * 1000, "intercept_ms": intercept,
            "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def handler_durations(log_path: Path, start: int) -> list[float]:
    """`duration_ms` of the service's own 'hook answered' log lines written after byte offset `start`."""
    out: list[float] = []
    with open(log_path, "rb") as f:
        f.seek(start)
        for line in f:
            if b'"hook answered"' not in line:
                continue
            try:
                out.append(float(orjson.loads(line)["duration_ms"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return out


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    quick: bool
    duration: float
    launcher: str
    load_client: str = "raw"
    only: tuple[str, ...] = ()   # latency of these cases only (no throughput, memory or cold start)

    def requests_for(self, resources: int) -> tuple[int, int, float]:
        """(warm-up, measured requests, time cap in seconds) for a case of this size."""
        if self.quick:
            return 3, 20, 5.0
        if resources <= 100:
            return 50, 1000, 20.0
        if resources <= 1000:
            return 20, 300, 25.0
        if resources <= 5000:
            return 5, 100, 30.0
        return 3, 40, 60.0

    @property
    def warmup_s(self) -> float:
        return 0.5 if self.quick else 2.0

    @property
    def cold_runs(self) -> int:
        return 1 if self.quick else 3


def measure_throughput(server: Server, body: bytes, plan: Plan) -> dict[str, Any]:
    assert server.proc is not None
    pids = process_tree(server.proc.pid)
    per0 = [tree_cpu_seconds([p]) for p in pids]
    t0 = time.perf_counter()
    tp = throughput(server.url, body, 32, plan.duration, plan.warmup_s, plan.load_client)
    wall = time.perf_counter() - t0
    per = [(tree_cpu_seconds([p]) - c) / wall for p, c in zip(pids, per0, strict=True)]
    tp["server_cpu_cores"] = sum(per)
    tp["server_cpu_cores_per_process"] = [round(x, 2) for x in per]
    tp["loadavg_after"] = loadavg()
    return tp


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "pydantic", "httpx",
                "fhir.resources", "mbc-cds"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "loadavg_at_start": loadavg(),
            "cpu_model": model, "mem_gib": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def run(plan: Plan) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mbc-cds-bench-"))
    log(f"workdir {workdir}")
    cases = build_cases(quick=plan.quick)
    if plan.only:
        unknown = set(plan.only) - {c["name"] for c in cases}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {[c['name'] for c in cases]}")
        cases = [c for c in cases if c["name"] in plan.only]
    bodies = {c["name"]: orjson.dumps(c["request"]) for c in cases}
    variants = {c["name"]: [orjson.dumps(v) for v in c["variants"]] for c in cases if c.get("variants")}
    typical = bodies["typical"] if "typical" in bodies else orjson.dumps(build_cases(quick=True)[0]["request"])
    template = migrated_template(workdir)
    result: dict[str, Any] = {
        "machine": machine_info(), "quick": plan.quick, "launcher": plan.launcher,
        "load_client": plan.load_client,
        "cases": [{"name": c["name"], "resources": c["resources"], "body_bytes": len(bodies[c["name"]])}
                  for c in cases],
        "latency": {"project": {}, "floor": {}}, "handler_ms": {}, "cards": {},
        "throughput": {"project": {}, "floor": {}}, "rss": {"project": {}, "floor": {}},
        "cold_start_s": {"project": [], "floor": []},
    }
    servers: list[Server] = []
    try:
        # 1 worker each, side by side; measurements alternate between them so that both see the same machine.
        proj = Server("project", 1, workdir, plan.launcher)
        floor = Server("floor", 1, workdir, plan.launcher)
        servers = [proj, floor]
        proj.start("w1", template)
        floor.start("w1")
        for s in servers:
            s.wait_first_hook(typical)
        with httpx.Client(headers=HEADERS, timeout=120) as client:
            for c in cases:
                name = c["name"]
                warm, n, cap = plan.requests_for(c["resources"])
                for s in (floor, proj):
                    offset = s.log_path.stat().st_size if s.log_path else 0
                    stats, content = sequential(client, s, bodies[name], warm, n, cap,
                                                path=c.get("path", SERVICE_PATH), variants=variants.get(name))
                    result["latency"][s.kind][name] = stats
                    if s.kind == "project":
                        result["handler_ms"][name] = summarize(handler_durations(s.log_path, offset)[warm:])
                        cards = orjson.loads(content)["cards"]
                        result["cards"][name] = [cd["source"]["topic"]["code"] for cd in cards]
                    log(f"latency {s.kind:<7} {name:<8} p50 {stats['p50']:8.2f} ms  p95 {stats['p95']:8.2f}  "
                        f"p99 {stats['p99']:8.2f}  (n={stats['n']}, server CPU "
                        f"{stats['server_cpu_ms_per_hook']:.2f} ms/hook, load {loadavg():.2f})")
                if name == "typical":
                    for s in servers:
                        result["rss"][s.kind]["w1_after_typical"] = s.rss_kb()
        if plan.only:
            for s in servers:
                s.stop()
            result["workdir"] = str(workdir)
            result["machine"]["loadavg_at_end"] = loadavg()
            result["rows"], result["targets"] = derive_latency(result, cases)
            return result
        for s in servers:
            result["rss"][s.kind]["w1_peak_after_sweep"] = s.rss_kb()
        for name in ("typical", "heavy"):
            for s in (floor, proj):
                tp = measure_throughput(s, bodies[name], plan)
                result["throughput"][s.kind][f"{name}/w1"] = tp
                log(f"throughput {s.kind:<7} {name:<8} 1 worker : {tp['hooks_per_s']:8.1f} hooks/s "
                    f"(server {tp['server_cpu_cores']:.2f} cores, client {tp['client_cpu_cores']:.2f} cores, "
                    f"errors {tp['errors']}, load {tp['loadavg_after']:.2f})")
        for s in servers:
            s.stop()

        # 2 workers each.
        proj = Server("project", 2, workdir, plan.launcher)
        floor = Server("floor", 2, workdir, plan.launcher)
        servers = [proj, floor]
        proj.start("w2", template)
        floor.start("w2")
        for s in servers:
            s.wait_first_hook(typical)
        for name in ("typical", "heavy"):
            for s in (floor, proj):
                tp = measure_throughput(s, bodies[name], plan)
                result["throughput"][s.kind][f"{name}/w2"] = tp
                log(f"throughput {s.kind:<7} {name:<8} 2 workers: {tp['hooks_per_s']:8.1f} hooks/s "
                    f"(server {tp['server_cpu_cores']:.2f} cores, client {tp['client_cpu_cores']:.2f} cores, "
                    f"errors {tp['errors']}, load {tp['loadavg_after']:.2f})")
        for s in servers:
            result["rss"][s.kind]["w2_peak"] = s.rss_kb()
            s.stop()

        # Cold start: one server at a time, 1 worker, a fresh (migrated) SQLite file each time.
        for i in range(plan.cold_runs):
            for kind in ("floor", "project"):
                s = Server(kind, 1, workdir, plan.launcher)
                servers = [s]
                s.start(f"cold{i}", template)
                seconds = s.wait_first_hook(typical)
                result["cold_start_s"][kind].append(seconds)
                log(f"cold start {kind:<7} run {i + 1}: {seconds:.3f} s")
                s.stop()
    finally:
        for s in servers:
            s.stop()
    result["workdir"] = str(workdir)
    result["machine"]["loadavg_at_end"] = loadavg()
    result["rows"], result["targets"], result["scaling"] = derive(result, cases)
    return result


def derive(result: dict[str, Any], cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                          dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(metric: str, unit: str, project: float, floor: float) -> None:
        rows.append({"metric": metric, "unit": unit, "project": project, "floor": floor,
                     "ratio": project / floor if floor else float("nan")})

    lat = result["latency"]
    for c in cases:
        name = c["name"]
        for q in ("p50", "p95", "p99"):
            row(f"{name} ({c['resources']} res) {q}", "ms", lat["project"][name][q], lat["floor"][name][q])
    for c in cases:
        name = c["name"]
        row(f"{name}: server CPU per hook (sequential)", "ms", lat["project"][name]["server_cpu_ms_per_hook"],
            lat["floor"][name]["server_cpu_ms_per_hook"])
    tp = result["throughput"]
    for key in tp["project"]:
        name, w = key.split("/")
        row(f"throughput {name}, {w[1:]} worker{'s' if w != 'w1' else ''}", "hooks/s",
            tp["project"][key]["hooks_per_s"], tp["floor"][key]["hooks_per_s"])
    rss = result["rss"]
    mib = 1 / 1024
    row("RSS 1 worker after typical", "MiB", rss["project"]["w1_after_typical"]["rss_sum_kb"] * mib,
        rss["floor"]["w1_after_typical"]["rss_sum_kb"] * mib)
    row("peak RSS 1 worker (whole sweep)", "MiB", rss["project"]["w1_peak_after_sweep"]["peak_sum_kb"] * mib,
        rss["floor"]["w1_peak_after_sweep"]["peak_sum_kb"] * mib)
    row("peak RSS 2 workers (all processes)", "MiB", rss["project"]["w2_peak"]["peak_sum_kb"] * mib,
        rss["floor"]["w2_peak"]["peak_sum_kb"] * mib)
    cold_p = statistics.median(result["cold_start_s"]["project"])
    cold_f = statistics.median(result["cold_start_s"]["floor"])
    row(f"cold start (median of {len(result['cold_start_s']['project'])})", "s", cold_p, cold_f)

    sweep = [c for c in cases if c.get("size")]
    xs = [float(c["resources"]) for c in sweep]
    fit_p = linear_fit(xs, [lat["project"][c["name"]]["p50"] for c in sweep])
    fit_f = linear_fit(xs, [lat["floor"][c["name"]]["p50"] for c in sweep])
    row("sweep slope (p50 per 1,000 resources)", "ms", fit_p["slope_ms_per_1000"], fit_f["slope_ms_per_1000"])
    scaling = {"project": fit_p, "floor": fit_f,
               "slope_ratio": fit_p["slope_ms_per_1000"] / fit_f["slope_ms_per_1000"]
               if fit_f["slope_ms_per_1000"] else float("nan")}

    def ratio(name: str) -> float:
        return lat["project"][name]["p50"] / lat["floor"][name]["p50"]

    order_targets = [
        {"target": f"{hook} p50 <= 2.0x floor p50 (as patient-view typical)", "value": round(ratio(hook), 2),
         "met": ratio(hook) <= 2.0} for hook in ("order-select", "order-sign") if hook in lat["project"]]

    biggest = sweep[-1]["name"] if sweep else None
    big_ms = lat["project"][biggest]["p50"] if biggest else float("nan")
    tp2 = tp["project"].get("typical/w2", {}).get("hooks_per_s", float("nan"))
    targets = [
        {"target": "typical p50 <= 2.0x floor p50", "value": round(ratio("typical"), 2),
         "met": ratio("typical") <= 2.0},
        {"target": "heavy p50 <= 1.5x floor p50", "value": round(ratio("heavy"), 2), "met": ratio("heavy") <= 1.5},
        {"target": f"latency linear in prefetch size (R^2 >= 0.98), {biggest} p50 < 1 s",
         "value": f"R^2 {fit_p['r2']:.3f}, {big_ms:.0f} ms, slope {scaling['slope_ratio']:.2f}x floor",
         "met": fit_p["r2"] >= 0.98 and big_ms < 1000 and (biggest == "n=20000" or result["quick"])},
        {"target": "cold start < 2 s", "value": round(cold_p, 2), "met": cold_p < 2.0},
        {"target": ">= 500 hooks/s, typical, 2 workers", "value": round(tp2, 1), "met": tp2 >= 500},
        *order_targets,
    ]
    return rows, targets, scaling


def derive_latency(result: dict[str, Any], cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                  list[dict[str, Any]]]:
    """Rows and targets of a latency-only run (`--only`)."""
    lat = result["latency"]
    rows = []
    for c in cases:
        for q in ("p50", "p95", "p99"):
            p, f = lat["project"][c["name"]][q], lat["floor"][c["name"]][q]
            rows.append({"metric": f"{c['name']} ({c['resources']} res) {q}", "unit": "ms", "project": p,
                         "floor": f, "ratio": p / f if f else float("nan")})
    targets = [{"target": f"{c['name']} p50 <= 2.0x floor p50", "met": ratio <= 2.0, "value": round(ratio, 2)}
               for c in cases if (ratio := lat["project"][c["name"]]["p50"] / lat["floor"][c["name"]]["p50"])]
    return rows, targets


def fmt(v: float) -> str:
    if v != v:  # NaN
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"mbc-cds benchmark {m['date']}  {m['nproc']} cores  {m['cpu_model']}  Python {m['python']}"
             f"{'  (quick)' if result['quick'] else ''}",
             f"load average (1 min) at start {m['loadavg_at_start']:.2f}, at end {m.get('loadavg_at_end', 0):.2f}; "
             f"throughput load generator: {result['load_client']}; service started with {result['launcher']}",
             "",
             "| metric | unit | project | floor | project/floor |",
             "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['metric']} | {r['unit']} | {fmt(r['project'])} | {fmt(r['floor'])} | "
                     f"{r['ratio']:.2f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'met' if t['met'] else 'NOT met'} |")
    hm = result["handler_ms"]
    lines += ["", "Time inside the service's handler (its 'hook answered' log, duration_ms) p50: "
              + ", ".join(f"{k} {fmt(v['p50'])} ms" for k, v in hm.items())]
    for kind in ("project", "floor") if result["throughput"]["project"] else ():
        cl = [f"{k} server {v['server_cpu_cores']:.2f} / client {v['client_cpu_cores']:.2f}"
              for k, v in result["throughput"][kind].items()]
        lines.append(f"CPU cores used during {kind} throughput runs: " + "; ".join(cl))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few requests, small sizes")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    p.add_argument("--out", help="also write the JSON results to this file")
    p.add_argument("--launcher", choices=("mbc-cds", "uvicorn"), default="mbc-cds",
                   help="start the service with `mbc-cds serve` (default) or `uvicorn app.main:app`")
    p.add_argument("--load-client", choices=("raw", "httpx"), default="raw",
                   help="concurrent load generator: asyncio streams (default) or httpx.AsyncClient")
    p.add_argument("--duration", type=float, help="seconds per throughput measurement (default 10, quick 2)")
    p.add_argument("--only", help="comma-separated case names (e.g. typical,order-select,order-sign): their "
                                  "latency only, no throughput, memory or cold start")
    args = p.parse_args(argv)
    plan = Plan(quick=args.quick, duration=args.duration or (2.0 if args.quick else 10.0), launcher=args.launcher,
                load_client=args.load_client,
                only=tuple(x.strip() for x in args.only.split(",") if x.strip()) if args.only else ())
    result = run(plan)
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
