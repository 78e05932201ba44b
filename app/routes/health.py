from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from app.routes.common import json_response
from app.routes.dependencies import RuntimeDep

router = APIRouter()


@router.get("/health", summary="Liveness", tags=["operations"])
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get("/ready", summary="Readiness: the database answers", tags=["operations"])
async def ready(runtime: RuntimeDep) -> Response:
    ok = await anyio.to_thread.run_sync(runtime.db.ping)
    if not ok:
        return json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return json_response({"status": "ready", "database": "ok", "rules": len(runtime.knowledge.rules)})
