"""The order hooks' own cost, in-process (no HTTP, no JSON): `HookHandler.handle` on the benchmark's typical
patient as patient-view, order-select (a different draft on every call: nothing reused) and order-sign (the
drafts order-select saw: the evaluation reused). Less sensitive to a busy machine than bench/run.py.

    python bench/order_hooks_inprocess.py [-n 600]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.patients import cases as build_cases  # noqa: E402
from bench.run import summarize  # noqa: E402


async def measure(n: int) -> dict[str, dict[str, float]]:
    import httpx

    from app.service.factory import build_handler
    from app.settings import Settings
    from cds_hooks.models import HookRequest
    from terminology import get_terminology

    cases = {c["name"]: c for c in build_cases(quick=True)}
    async with httpx.AsyncClient() as http:
        handler = build_handler(Settings(require_jwt=False), http, terminology=get_terminology())
        runs = {
            "patient-view": [HookRequest.model_validate(cases["typical"]["request"])] * n,
            "order-select": [HookRequest.model_validate(v) for v in cases["order-select"]["variants"][:n]],
            "order-sign": [HookRequest.model_validate(cases["order-sign"]["request"])] * n,
        }
        out = {}
        for name, requests in runs.items():
            for r in requests[:20]:  # warm-up
                await handler.handle(r)
            times = []
            for r in requests:
                t0 = time.perf_counter()
                await handler.handle(r)
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = summarize(times)
        cache = handler.evaluator.order_cache
        out["cache"] = {"hits": cache.hits, "misses": cache.misses}
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=600)
    args = p.parse_args(argv)
    result = asyncio.run(measure(args.n))
    base = result["patient-view"]["p50"]
    for name in ("patient-view", "order-select", "order-sign"):
        s = result[name]
        print(f"{name:<13} p50 {s['p50']:.3f} ms  p95 {s['p95']:.3f} ms  ({s['p50'] / base:.2f}x patient-view p50)")
    print(f"order cache: {result['cache']['hits']} hits, {result['cache']['misses']} misses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
