from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from app.routes.common import json_response
from app.routes.dependencies import RuntimeDep, verified_client

router = APIRouter()


@router.get("/cds-services", summary="CDS Hooks discovery", tags=["cds-hooks"],
            dependencies=[Depends(verified_client)])
async def discovery(runtime: RuntimeDep) -> Response:
    return json_response(runtime.discovery)
