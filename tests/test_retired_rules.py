"""Rules retired in version 2 (folded into assessment-due) appear nowhere a user or integrator looks."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.service.knowledge import load_knowledge

RETIRED = ("pain-assessment-due", "distress-screening-due")
ROOT = Path(__file__).parents[1]


def test_retired_rule_ids_are_gone_from_knowledge_docs_and_discovery(client: TestClient) -> None:
    assert not set(RETIRED) & {r.id for r in load_knowledge().rules}
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "plandefinitions").glob("*.json")]
    texts += [p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")]
    texts += [(ROOT / "README.md").read_text(encoding="utf-8"), client.get("/cds-services").text,
              client.get("/fhir/CodeSystem/mbc-cds-rules").text]
    for text in texts:
        for rid in RETIRED:
            assert rid not in text
    assert "assessment-due" in client.get("/fhir/CodeSystem/mbc-cds-rules").text
