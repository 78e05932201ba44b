"""Where a hook's time goes, in-process: stage timings and a pyinstrument profile of the route.

    python bench/profile_hook.py [--case typical|heavy|n=100|n=1000|n=5000|n=20000] [-n N] [--html FILE]
                                 [--target route|handler] [--top 25]

`--target route` (default) drives the real ASGI app (middleware, route, JSON, audit submit, logging) without
HTTP; `--target handler` profiles `HookHandler.handle` (app/service/handle.py) alone. pyinstrument must be installed
(`pip install pyinstrument`); it is not a dependency of the project. The audit writer runs in its own thread,
which pyinstrument does not sample, so its cost per row is measured separately.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.patients import cases as build_cases  # noqa: E402

SERVICE_PATH = "/cds-services/mbc-palliative-care"


def make_app(tmp: Path) -> Any:
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp / 'profile.db'}", require_jwt=False)
    return create_app(settings)


class AsgiDriver:
    """Calls the ASGI app directly with one POST (no sockets): what uvicorn hands the app, minus HTTP parsing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def lifespan_start(self) -> None:
        self._lifespan_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan_done = asyncio.Event()
        started = asyncio.Event()
        await self._lifespan_queue.put({"type": "lifespan.startup"})

        async def receive() -> dict[str, Any]:
            return await self._lifespan_queue.get()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()
            elif message["type"] == "lifespan.startup.failed":
                raise RuntimeError(message.get("message"))
            elif message["type"].startswith("lifespan.shutdown"):
                self._lifespan_done.set()

        self._lifespan_task = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"},
                                                            "state": {}}, receive, send))
        await started.wait()

    async def lifespan_stop(self) -> None:
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        await self._lifespan_done.wait()
        await self._lifespan_task

    async def post(self, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": SERVICE_PATH, "raw_path": SERVICE_PATH.encode(), "query_string": b"",
            "root_path": "", "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def stage_timings(runtime: Any, body: bytes, n: int) -> dict[str, float]:
    """Median ms of each stage of the route, run by hand in the route's order."""
    from app.routes.common import json_response
    from app.routes.dependencies import parse_json_object
    from app.routes.services import _extra_resources
    from cds_hooks.models import HookRequest

    handler = runtime.handler
    evaluator = handler.evaluator
    service = runtime.services["mbc-palliative-care"]
    now = datetime.now(UTC)
    acc: dict[str, list[float]] = defaultdict(list)

    async def one() -> None:
        t = time.perf_counter
        t0 = t()
        data = parse_json_object(body)
        t1 = t()
        hook = HookRequest.model_validate(data)
        t2 = t()
        result = await handler.resolver.resolve(hook, evaluator.templates)
        resources = result.all_resources()
        extra = _extra_resources(hook.prefetch or {}, service.prefetch)
        t3 = t()
        from app.clinical.evaluation import evaluate_patient

        ev = evaluate_patient(resources, patient_id=hook.patient_id() or "", now=now,
                              terminology=evaluator.terminology, **evaluator.windows)
        t4 = t()
        fired = evaluator.engine.fire(ev, hook.hookInstance)
        t5 = t()
        json_response({"cards": [f.card for f in fired]})
        t6 = t()
        for name, a, b in (("orjson parse", t0, t1), ("HookRequest.model_validate", t1, t2),
                           ("prefetch resolve + flatten", t2, t3), ("facts + phase + pain (evaluate_patient)", t3, t4),
                           ("engine.fire (cards, drafts, fhir.resources)", t4, t5),
                           ("serialise response (prune + orjson)", t5, t6)):
            acc[name].append((b - a) * 1000)
        del extra

    async def main() -> None:
        for _ in range(n):
            await one()

    asyncio.run(main())
    return {k: statistics.median(v) for k, v in acc.items()}


def core_write(db: Any, batch: list[Any]) -> None:
    """What AuditWriter._write could be: two executemany INSERTs (SQLAlchemy Core), the card insert ignoring
    uuids already stored (what `merge` is used for today), instead of ORM objects and one SELECT per card."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from app.store.models import Invocation, IssuedCard

    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else pg_insert
    inv = [{"hook_instance": r.hook_instance[:128], "service": r.service, "patient_hash": r.patient_hash,
            "rule_ids": list(r.rule_ids), "card_count": len(r.card_uuids), "phase": r.phase,
            "duration_ms": r.duration_ms, "status": r.status, "problems": r.problems, "created_at": r.created_at}
           for r in batch]
    cards = [{"uuid": u, "rule_id": rule, "service": r.service, "hook_instance": r.hook_instance[:128],
              "created_at": r.created_at} for r in batch for u, rule in r.card_uuids]
    with db.engine.begin() as conn:
        conn.execute(insert(Invocation.__table__), inv)
        if cards:
            conn.execute(insert(IssuedCard.__table__).on_conflict_do_nothing(index_elements=["uuid"]), cards)


def audit_cost(runtime: Any, n: int = 200) -> dict[str, float]:
    """ms of audit-writer work per hook (one Invocation row + one IssuedCard merge per card), batched as it runs."""
    from app.store.audit import AuditRecord

    now = datetime.now(UTC)
    recs = [AuditRecord(hook_instance=f"bench-{i}", service="mbc-palliative-care", patient_hash="x" * 64,
                        rule_ids=("mbc-overview", "referral-palliative-care", "acp-revisit", "stable-phase-wellbeing"),
                        card_uuids=tuple((f"{i}-{k}-uuid", r) for k, r in enumerate(
                            ("mbc-overview", "referral-palliative-care", "acp-revisit", "stable-phase-wellbeing"))),
                        phase="stable", duration_ms=3.0, status=200, problems=0, created_at=now)
            for i in range(n)]
    out: dict[str, float] = {}
    orm = getattr(runtime.audit, "_write_rows", runtime.audit._write)
    for label, write in (("AuditWriter._write_rows (ORM add + merge)", orm),
                         ("Core executemany + ON CONFLICT DO NOTHING", lambda b: core_write(runtime.db, b))):
        for batch in (1, 20, 200):
            t0 = time.perf_counter()
            for start in range(0, n, batch):
                write(recs[start:start + batch])
            out[f"{label}, batch {batch}"] = (time.perf_counter() - t0) * 1000 / n
            # new card uuids, so that the next round inserts again
            recs = [AuditRecord(hook_instance=r.hook_instance, service=r.service, patient_hash=r.patient_hash,
                                rule_ids=r.rule_ids, card_uuids=tuple((u + "b", rid) for u, rid in r.card_uuids),
                                phase=r.phase, duration_ms=r.duration_ms, status=r.status, problems=r.problems,
                                created_at=r.created_at) for r in recs]
    return out


WHATIFS = ("baseline", "audit-core", "audit-off", "no-prune", "draft-validation-cached", "log-off", "gc-freeze",
           "gc-off-parse", "no-depth-walk", "all")


def apply_whatif(name: str, runtime: Any) -> list[tuple[Any, str, Any]]:
    """Monkeypatches (bench only) that stand for a proposed change; returns what to undo."""
    import app.engine.suggestions as suggestions
    import app.routes.services as services
    from app.routes.common import Response

    undo: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, attr: str, value: Any) -> None:
        undo.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    names = set(WHATIFS[1:-1]) - {"audit-off"} if name == "all" else {name}
    if "audit-core" in names:
        # _write_rows where the writer has it (it keeps _write's bookkeeping), else _write
        target = "_write_rows" if hasattr(runtime.audit, "_write_rows") else "_write"
        patch(runtime.audit, target, lambda batch: core_write(runtime.db, batch))
    if "audit-off" in names:
        patch(runtime.audit, "submit", lambda record: None)
    if "no-prune" in names:
        patch(services, "json_response", lambda data, status=200, headers=None: Response(
            content=orjson.dumps(data), status_code=status, media_type="application/json", headers=headers))
    if "draft-validation-cached" in names:
        real = suggestions.get_fhir_model_class
        seen: set[tuple[Any, ...]] = set()

        class _Once:
            def __init__(self, cls: Any) -> None:
                self.cls = cls

            def model_validate(self, resource: dict[str, Any]) -> None:
                # The shape of a draft depends on the ActivityDefinition and the number of reasons only; the
                # values that vary per patient (ids in references, the instant) have fixed FHIR types.
                key = (resource.get("resourceType"), str(resource.get("instantiatesCanonical")),
                       len(resource.get("reasonReference") or []) if isinstance(resource.get("reasonReference"),
                                                                               list) else 1)
                if key not in seen:
                    self.cls.model_validate(resource)
                    seen.add(key)

        patch(suggestions, "get_fhir_model_class", lambda kind: _Once(real(kind)))
    if "log-off" in names:
        lg = logging.getLogger("mbc_cds.hook")
        patch(lg, "disabled", True)
    if "gc-off-parse" in names or "no-depth-walk" in names:
        import app.routes.dependencies as dependencies

        real_parse = dependencies.parse_json_object
        skip_walk = "no-depth-walk" in names
        no_gc = "gc-off-parse" in names

        def parse(body: bytes, max_depth: int | None = None, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
            # JSON text cannot hold a reference cycle: the collector has nothing to find in what orjson builds.
            was = gc.isenabled()
            if no_gc:
                gc.disable()
            try:
                return real_parse(body, None if skip_walk else max_depth, skip)
            finally:
                if was:
                    gc.enable()

        patch(dependencies, "parse_json_object", parse)
    if "gc-freeze" in names:
        # gc.freeze() after start-up: the terminology index, knowledge and models leave the collected generations,
        # so the collections that parsing a big prefetch triggers no longer walk them.
        gc.collect()
        gc.freeze()
        undo.append((_GcUnfreeze(), "noop", None))
    return undo


class _GcUnfreeze:
    """An undo entry that unfreezes the collector when its attribute is set back."""

    def __setattr__(self, name: str, value: Any) -> None:
        gc.unfreeze()


async def whatif_cpu(driver: AsgiDriver, runtime: Any, body: bytes, n: int) -> tuple[float, float]:
    """(process CPU ms per hook, all threads incl. the audit writer; median wall ms) over n hooks."""
    walls: list[float] = []
    for _ in range(3):
        await driver.post(body)
    await asyncio.sleep(0.3)
    c0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        await driver.post(body)
        walls.append((time.perf_counter() - t) * 1000)
    while not runtime.audit._queue.empty():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    return (time.process_time() - c0) * 1000 / n, statistics.median(walls)


def flat_profile(session: Any, top: int) -> list[tuple[float, float, str]]:
    """(self %, total %, function) from a pyinstrument session, by self time; total counts each frame once."""
    root = session.root_frame()
    total = root.time if root else 0.0
    self_t: dict[str, float] = defaultdict(float)
    incl_t: dict[str, float] = defaultdict(float)

    def walk(frame: Any, stack: frozenset[str]) -> None:
        if frame.is_synthetic:  # "[self]", "[await]" ...: their time belongs to the parent
            return
        key = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        self_t[key] += frame.time - sum(c.time for c in frame.children if not c.is_synthetic)
        if key not in stack:
            incl_t[key] += frame.time
        for child in frame.children:
            walk(child, stack | {key})

    if root:
        walk(root, frozenset())
    rows = sorted(((100 * s / total, 100 * incl_t[k] / total, k) for k, s in self_t.items()), reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="typical")
    p.add_argument("-n", type=int, default=0, help="hooks to profile (default: by size)")
    p.add_argument("--target", choices=("route", "handler"), default="route")
    p.add_argument("--html", help="write pyinstrument's HTML report here")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-stages", action="store_true")
    p.add_argument("--whatif", action="store_true",
                   help="measure process CPU per hook for each proposed change (monkeypatched here, not in app/)")
    args = p.parse_args(argv)
    from pyinstrument import Profiler

    case = next(c for c in build_cases() if c["name"] == args.case)
    body = orjson.dumps(case["request"])
    n = args.n or max(3, min(500, 20000 // max(case["resources"], 1)))
    tmp = Path(tempfile.mkdtemp(prefix="mbc-cds-profile-"))
    app = make_app(tmp)
    driver = AsgiDriver(app)
    print(f"case {case['name']}: {case['resources']} resources, {len(body):,} bytes, {n} hooks")

    async def run() -> Any:
        await driver.lifespan_start()
        # Logs are formatted as in production (JSON, INFO) but not printed.
        for handler in logging.getLogger("mbc_cds").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        runtime = app.state.runtime
        if args.whatif:
            print(f"\nwhat-if: process CPU ms per hook (all threads, the audit writer included), median of 3 "
                  f"interleaved rounds of {n} hooks; median wall ms:")
            cpus: dict[str, list[float]] = defaultdict(list)
            walls: dict[str, list[float]] = defaultdict(list)
            for _round in range(3):
                for name in WHATIFS:
                    undo = apply_whatif(name, runtime)
                    cpu, wall = await whatif_cpu(driver, runtime, body, n)
                    for obj, attr, value in reversed(undo):
                        setattr(obj, attr, value)
                    cpus[name].append(cpu)
                    walls[name].append(wall)
            base = statistics.median(cpus["baseline"])
            for name in WHATIFS:
                cpu = statistics.median(cpus[name])
                print(f"  {name:<24} CPU {cpu:8.3f} ms/hook ({100 * (cpu - base) / base:+6.1f} %)  "
                      f"wall {statistics.median(walls[name]):8.3f} ms")
        from cds_hooks.models import HookRequest

        hook = HookRequest.model_validate(orjson.loads(body))
        for _ in range(3):  # warm-up
            status, content = await driver.post(body)
            assert status == 200, content[:300]
        plain: list[float] = []
        for _ in range(max(3, min(n, 300))):
            t = time.perf_counter()
            await driver.post(body)
            plain.append((time.perf_counter() - t) * 1000)
        print(f"route (ASGI, no HTTP, no profiler): median {statistics.median(plain):.3f} ms per hook")
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        t0 = time.perf_counter()
        profiler.start()
        for _ in range(n):
            if args.target == "route":
                await driver.post(body)
            else:
                await runtime.handler.handle(hook)
        profiler.stop()
        wall = (time.perf_counter() - t0) * 1000 / n
        await driver.lifespan_stop()
        return profiler, wall, runtime

    profiler, wall, runtime = asyncio.run(run())
    print(f"{args.target}: {wall:.2f} ms per hook under the profiler")
    if not args.no_stages:
        from app.runtime import build_runtime
        from app.settings import Settings

        rt = build_runtime(Settings(database_url=f"sqlite:///{tmp / 'stages.db'}", require_jwt=False))
        stages = stage_timings(rt, body, max(3, min(n, 200)))
        total = sum(stages.values())
        print("\nstages (median ms, no profiler):")
        for k, v in stages.items():
            print(f"  {v:8.3f} ms  {100 * v / total:5.1f} %  {k}")
        print(f"  {total:8.3f} ms  total of the stages")
        print("\naudit writer, ms of background-thread work per hook (4 cards):")
        for k, v in audit_cost(rt).items():
            print(f"  {k}: {v:.3f} ms")
        rt.audit.stop()
    print(f"\ntop functions by self time ({args.target}, {case['name']}):")
    print("   self%  total%  function")
    for s, t, k in flat_profile(profiler.last_session, args.top):
        print(f"  {s:6.1f}  {t:6.1f}  {k}")
    if args.html:
        Path(args.html).write_text(profiler.output_html())
    print("\n" + profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)[:12000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
