"""Shared fixtures: an app on a fresh SQLite file with JWT off and a fixed clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from app.data_requirements import prefetch_types
from app.main import create_app
from app.settings import Settings
from tests import hapi_fixture
from tests.hapi_fixture import hapi_fhir_server  # noqa: F401  (the session's HAPI FHIR server, for every test)

if TYPE_CHECKING:
    from app.store.db import Database

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SERVICE_URL = "/cds-services/mbc-palliative-care"


def pytest_collection_finish(session: pytest.Session) -> None:
    # HAPI takes a minute or more to start: begin as soon as a selected test is known to need it
    if any("hapi_fhir_server" in getattr(item, "fixturenames", ()) for item in session.items):
        hapi_fixture.start_early()


def pytest_sessionfinish(session: pytest.Session) -> None:
    hapi_fixture.stop_server()  # also when the tests that needed it never ran (-x, a crash)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": f"sqlite:///{tmp_path / 'test.db'}", "require_jwt": False,
                                 "audit_spool_file": str(tmp_path / "audit-spool.jsonl")}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.runtime.clock = lambda: NOW
        yield c


def pg_url() -> str | None:
    return os.environ.get("MBC_CDS_TEST_DATABASE_URL") or None


def migrated_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A database at the head migration for one test: a fresh SQLite file, or the PostgreSQL test database with its
    schema dropped first and after (skipped when MBC_CDS_TEST_DATABASE_URL is not set)."""
    from app.store.db import Database
    from app.store.migrate import downgrade, upgrade

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = pg_url() or ""
        if not url:
            pytest.skip("MBC_CDS_TEST_DATABASE_URL not set: PostgreSQL tests skipped")
    database = Database(url)
    if kind == "postgresql":
        downgrade(database.url)  # a clean schema: drop what an earlier run left
    upgrade(database.url)
    yield database
    if kind == "postgresql":
        downgrade(database.url)
    database.dispose()


def hook_request(resources: list[dict], patient_id: str, **extra: object) -> dict:
    """A patient-view request with every resource in one prefetch bundle per type, as an EHR would send."""
    by_key: dict[str, list[dict]] = {}
    keys = {rtype: key for key, rtype in prefetch_types().items()}
    for r in resources:
        key = keys.get(r.get("resourceType", ""))
        if key:
            by_key.setdefault(key, []).append(r)
    prefetch: dict[str, object] = {}
    for key in keys.values():
        items = by_key.get(key, [])
        if key == "patient":
            prefetch[key] = items[0] if items else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                             "entry": [{"resource": r} for r in items]}
    body: dict[str, object] = {
        "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": patient_id, "userId": "Practitioner/example"}, "prefetch": prefetch,
    }
    body.update(extra)
    return body
