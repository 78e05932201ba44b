"""Shared route helpers: JSON responses and the OpenAPI description of bodies the routes read themselves."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from cds_hooks.serialize import dump


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None, *,
                  prune: bool = True) -> Response:
    """CDS Hooks documents leave out empty optional fields (prune); operational JSON keeps its shape."""
    content = dump(data) if prune else orjson.dumps(data)
    return Response(content=content, status_code=status, media_type="application/json", headers=headers)


def json_body_doc(model_name: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself (app.routes.dependencies): documents the body
    as the pydantic model registered under components/schemas (see app.main), so integrators and schema-based
    fuzzers see it."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model_name}"}}}}}
