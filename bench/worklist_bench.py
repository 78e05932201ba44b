"""Benchmark the population worklist: in-process vs Spark on generated populations.

    python bench/worklist_bench.py [--sizes 1000,10000,100000] [--engines local,spark] [--workdir DIR]
                                   [--filler 20] [--timeout 1800] [--results bench/RESULTS-worklist.md]

For every size it generates a population (app.worklist.generate, Bulk Data NDJSON), then runs
``mbc-cds worklist`` once per engine in a child process, sampling the resident memory of that process and of all
its descendants (the Spark JVM and its Python workers) from /proc every 0.2 s. Reports patients per second
(all patients read, in scope or not, over the whole command's wall time, start-up included), peak RSS, and
whether the Spark worklist is byte-identical to the local one. Prints a table and writes it as markdown.
A run that hits --timeout is reported as such; the table never shows an extrapolated number as measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = "2026-11-20T10:00:00Z"


@dataclass
class Run:
    size: int
    engine: str
    seconds: float | None
    peak_tree_mb: float
    peak_main_mb: float
    rows: int | None
    same_as_local: str
    note: str = ""
    load: float | None = None   # mean 1-minute load average during the run (other work on the machine shows here)

    @property
    def rate(self) -> float | None:
        return self.size / self.seconds if self.seconds else None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    seen, stack = [], [pid]
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(_children(p))
    return seen


def _load() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return 0.0


LOADS: list[float] = []


def run_measured(cmd: list[str], timeout: float, log: Path) -> tuple[float | None, float, float, int]:
    """(wall seconds or None on timeout, peak RSS of the process tree MB, peak RSS of the main process MB, rc)."""
    t0 = time.perf_counter()
    LOADS.clear()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        peak_tree = peak_main = 0.0
        while proc.poll() is None:
            peak_main = max(peak_main, _rss_mb(proc.pid))
            peak_tree = max(peak_tree, sum(_rss_mb(p) for p in _tree(proc.pid)))
            LOADS.append(_load())
            if time.perf_counter() - t0 > timeout:
                for p in reversed(_tree(proc.pid)):
                    try:
                        os.kill(p, 9)
                    except OSError:
                        pass
                proc.wait()
                return None, peak_tree, peak_main, -9
            time.sleep(0.2)
    return time.perf_counter() - t0, peak_tree, peak_main, proc.returncode


def ensure_population(workdir: Path, size: int, filler: int, seed: int) -> tuple[Path, float | None, int]:
    from app.worklist.generate import generate

    pop = workdir / f"pop-{size}"
    manifest = pop / "manifest.json"
    if manifest.exists():
        import orjson

        info = orjson.loads(manifest.read_bytes())["extension"]["generator"]
        if info["patients"] == size and info["filler"] == filler and info["seed"] == seed:
            return pop, None, sum(info["resources"].values())
    t0 = time.perf_counter()
    info = generate(pop, size, seed=seed, now=datetime.fromisoformat(NOW.replace("Z", "+00:00")), filler=filler,
                    progress=sys.stderr.isatty())["extension"]["generator"]
    return pop, time.perf_counter() - t0, sum(info["resources"].values())


def _versions() -> str:
    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} CPU", platform.machine()]
    try:
        import pyspark

        parts.append(f"PySpark {pyspark.__version__}")
    except ImportError:
        parts.append("no PySpark")
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.splitlines()
        parts.append(java[0] if java else "java ?")
    except (OSError, subprocess.SubprocessError):
        parts.append("no Java")
    try:
        with open("/proc/meminfo") as f:
            parts.append(f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM")
    except OSError:
        pass
    return ", ".join(parts)


def markdown(runs: list[Run], gens: dict[int, tuple[float | None, int, float]], args: argparse.Namespace) -> str:
    lines = [
        "# Population worklist benchmark (`mbc-cds worklist`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} with `python bench/worklist_bench.py` on {_versions()}.",
        f"Populations from `app.worklist.generate` (seed {args.seed}, {args.filler} filler vital-sign observations "
        "per patient, Bulk Data NDJSON); `--now " + NOW + "`; resource level enhanced. Spark runs `local[2]`.",
        "Patients/s = all patients read (in scope or not) / wall time of the whole command, start-up included "
        "(Spark session start ~10-15 s, terminology and knowledge load ~1-4 s per process). Peak RSS: the command's "
        "own process, and the sum over it and all its descendants (Spark: driver + JVM + Python workers), "
        "sampled every 0.2 s. Load: mean 1-minute load average during the run, on a "
        f"{os.cpu_count()}-CPU machine shared with other work (a local run alone is ~1, Spark local[2] ~2-3; more "
        "means other processes competed for the CPUs and the rate is pessimistic).",
        "",
        "| patients | resources | input MB | engine | wall s | patients/s | peak RSS main MB | peak RSS tree MB "
        "| worklist rows | same as local | load |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in runs:
        _, resources, mb = gens[r.size]
        wall = f"{r.seconds:,.1f}" if r.seconds else f"timeout > {args.timeout:,.0f}"
        rate = f"{r.rate:,.0f}" if r.rate else "-"
        rows = f"{r.rows:,}" if r.rows is not None else "-"
        lines.append(f"| {r.size:,} | {resources:,} | {mb:,.0f} | {r.engine} | {wall} | {rate} | "
                     f"{r.peak_main_mb:,.0f} | {r.peak_tree_mb:,.0f} | {rows} | {r.same_as_local} | "
                     f"{r.load if r.load is not None else '?'} |")
    gen_lines = [f"{size:,} patients: {t:,.1f} s" for size, (t, _, _) in sorted(gens.items()) if t]
    if gen_lines:
        lines += ["", "Generation time: " + "; ".join(gen_lines) + "."]
    notes = [r for r in runs if r.note]
    if notes:
        lines += ["", *(f"- {r.size:,} {r.engine}: {r.note}" for r in notes)]
    return "\n".join(lines) + "\n"


def _load_cache(path: Path) -> dict[str, dict]:
    import orjson

    return orjson.loads(path.read_bytes()) if path.exists() else {}


def _save_cache(path: Path, cache: dict[str, dict]) -> None:
    import orjson

    path.write_bytes(orjson.dumps(cache, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--engines", default="local,spark")
    p.add_argument("--workdir", default="/tmp/mbc-worklist-bench")
    p.add_argument("--filler", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is stopped")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS-worklist.md"))
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Runs of earlier invocations with the same workdir stay in the table (a size or engine can be re-run alone).
    cache_path = workdir / "results.json"
    cache = _load_cache(cache_path)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]

    def table() -> str:
        done = [r for key, r in cache.items() if not key.startswith("gen/")]
        runs = [Run(**{k: v for k, v in r.items() if k in Run.__dataclass_fields__})
                for r in sorted(done, key=lambda r: (r["size"], r["engine"] != "local", r["engine"]))]
        gens = {int(k.split("/")[1]): (v["seconds"], v["resources"], v["mb"]) for k, v in cache.items()
                if k.startswith("gen/")}
        return markdown(runs, gens, args)

    for size in sizes:
        pop, gen_s, resources = ensure_population(workdir, size, args.filler, args.seed)
        mb = sum(f.stat().st_size for f in pop.glob("*.ndjson")) / 2**20
        old = cache.get(f"gen/{size}", {})
        cache[f"gen/{size}"] = {"seconds": gen_s if gen_s is not None else old.get("seconds"),
                                "resources": resources, "mb": mb}
        print(f"== {size:,} patients ({resources:,} resources, {mb:,.0f} MB)"
              + (f", generated in {gen_s:.1f} s" if gen_s else ", reused"), flush=True)
        for engine in engines:
            out = workdir / f"worklist-{size}-{engine}.csv"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "app.cli", "worklist", str(pop), "--out", str(out), "--engine", engine,
                   "--now", NOW, "--no-progress", "--quiet"]
            seconds, tree, main_mb, rc = run_measured(cmd, args.timeout, workdir / f"log-{size}-{engine}.txt")
            rows = None
            note = ""
            if seconds is not None and rc == 0 and out.exists():
                rows = sum(1 for _ in open(out, encoding="utf-8")) - 1
            elif seconds is not None:
                note = f"failed (exit {rc}); see {workdir / f'log-{size}-{engine}.txt'}"
                seconds = None
            same = "-"
            local_out = workdir / f"worklist-{size}-local.csv"
            if engine != "local" and rows is not None and local_out.exists():
                same = "yes" if out.read_bytes() == local_out.read_bytes() else "NO"
            load = round(sum(LOADS) / len(LOADS), 1) if LOADS else None
            run = Run(size, engine, seconds, tree, main_mb, rows, same, note, load)
            cache[f"{size}/{engine}"] = dict(run.__dict__)
            _save_cache(cache_path, cache)
            print(f"   {engine:<6} " + (f"{seconds:8.1f} s  {run.rate:8,.0f} patients/s" if seconds else
                                       f"{'timeout/failed':>28}")
                  + f"  peak RSS main {main_mb:,.0f} MB, tree {tree:,.0f} MB  rows {rows}  same={same}", flush=True)
            Path(args.results).write_text(table(), encoding="utf-8")
    text = table()
    Path(args.results).write_text(text, encoding="utf-8")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
