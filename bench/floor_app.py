"""The benchmark's floor: a bare FastAPI app that does the least a CDS service must do.

It reads the same request body, parses it with orjson and answers with one constant card in the CDS Hooks
shape the service emits. Served the same way as the service (`uvicorn floor_app:app --app-dir bench`), its
latency and throughput are what the JSON and the HTTP stack cost; the service's ratio to it is what the engine
adds.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

_CARD = {
    "uuid": "0b6d4d8e-3f5e-5c8a-9a55-6f1f1d2c9a01",
    "summary": "Stable phase, bone and liver metastases: metastatic breast cancer overview",
    "detail": "**Phase: stable**\n\n**Metastatic sites:** bone, liver\n- bone (first recorded 2026-01-01) "
              "(Condition/c2)\n- liver (first recorded 2026-06-01) (Condition/c3)\n\n**Source:** JCO OP 2021. "
              "Suggestions are drafts for a clinician to review and sign.",
    "indicator": "info",
    "source": {"label": "mbc-cds: JCO OP 2021",
               "topic": {"system": "http://mbc-cds.example.org/fhir/CodeSystem/mbc-cds-rules",
                         "code": "mbc-overview", "display": "Metastatic breast cancer overview"}},
    "overrideReasons": [
        {"system": "http://mbc-cds.example.org/fhir/CodeSystem/mbc-cds-override-reason",
         "code": "already-addressed", "display": "Already addressed"},
        {"system": "http://mbc-cds.example.org/fhir/CodeSystem/mbc-cds-override-reason",
         "code": "not-appropriate", "display": "Not clinically appropriate now"},
    ],
}

app = FastAPI(title="mbc-cds benchmark floor")


@app.get("/health")
async def health() -> Response:
    return Response(content=b'{"status":"ok"}', media_type="application/json")


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    if not isinstance(data, dict):
        return Response(content=b'{"error":"malformed-json","status":400}', status_code=400,
                        media_type="application/json")
    return Response(content=orjson.dumps({"cards": [_CARD]}), media_type="application/json")
