from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.routes.common import check_jwt, json_response, runtime_of

router = APIRouter()


@router.get("/cds-services", summary="CDS Hooks discovery", tags=["cds-hooks"])
async def discovery(request: Request) -> Response:
    runtime = runtime_of(request)
    await check_jwt(request, runtime)
    return json_response(runtime.discovery)
