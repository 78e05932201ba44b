"""The objects one app instance shares across requests, built once at start-up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.engine.knowledge import Knowledge
from app.safety import check_configuration
from app.service.factory import build_handler, terminology_for
from app.service.handle import HookHandler
from app.service.knowledge import load_knowledge
from app.service_definition import SERVICE_ID, order_service_definitions, service_definition
from app.settings import Settings
from app.store.audit import AuditWriter
from app.store.db import Database, DbTimeouts
from app.store.migrate import upgrade_at_start
from app.store.replay import DatabaseReplayCache
from app.store.snoozes import SnoozeIndex
from cds_hooks.auth import JwtVerifier, TrustedClient, load_clients
from cds_hooks.discovery import DiscoveryDocument, ServiceDefinition, discovery_document
from cds_hooks.jwks_fetch import jwks_client
from cds_hooks.outbound import outbound_client
from terminology import Terminology

log = logging.getLogger("mbc_cds.runtime")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    audit: AuditWriter
    knowledge: Knowledge
    terminology: Terminology
    services: dict[str, ServiceDefinition]
    discovery: DiscoveryDocument
    http: httpx.AsyncClient
    handler: HookHandler
    verifier: JwtVerifier | None
    snoozes: SnoozeIndex
    clients: list[TrustedClient] = field(default_factory=list)
    # JWK Sets have their own client: key fetches never queue behind FHIR reads (cds_hooks/jwks_fetch.py).
    jwks_http: httpx.AsyncClient | None = None
    # The request clock; tests and replays inject a fixed instant here.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def close(self) -> None:
        self.snoozes.stop()
        self.audit.stop()
        await self.http.aclose()
        if self.jwks_http is not None:
            await self.jwks_http.aclose()
        self.db.dispose()


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    clients: list[TrustedClient] = []
    if settings.require_jwt and settings.clients_file:
        clients = load_clients(Path(settings.clients_file))
    # Before anything is opened: an unsafe configuration stops here with one message.
    check_configuration(settings, clients)
    terminology = terminology_for(settings)
    knowledge = load_knowledge()
    db = Database(settings.database_url, DbTimeouts(
        connect_seconds=settings.db_connect_timeout_seconds, statement_seconds=settings.db_statement_timeout_seconds,
        pool_seconds=settings.db_statement_timeout_seconds))
    if migrate:
        upgrade_at_start(db.url)
    audit = AuditWriter(db, spool=settings.audit_spool_file or None)
    audit.start()
    timeout = httpx.Timeout(settings.fhir_timeout_seconds, connect=settings.fhir_connect_timeout_seconds)
    http = outbound_client(timeout, settings.fhir_max_connections_per_origin)
    definition = service_definition(terminology)
    services = {SERVICE_ID: definition}
    services.update({s.id: s for s in order_service_definitions(terminology)})
    verifier: JwtVerifier | None = None
    jwks_http: httpx.AsyncClient | None = None
    if settings.require_jwt:
        if not settings.clients_file:
            log.warning("MBC_CDS_REQUIRE_JWT is on but MBC_CDS_CLIENTS_FILE is not set: every EHR is refused")
        jwks_http = jwks_client(settings.jwks_timeout_seconds)
        verifier = JwtVerifier(clients, jwks_http, leeway=settings.jwt_leeway_seconds,
                               jwks_ttl=settings.jwks_cache_seconds, jwks_timeout=settings.jwks_timeout_seconds,
                               replay_cache=DatabaseReplayCache(db, timeout=settings.replay_check_timeout_seconds))
    else:
        log.warning("JWT verification is OFF (MBC_CDS_REQUIRE_JWT=false): any caller is trusted. "
                    "Use this for demos and tests only.")
    if settings.audit_salt == Settings.model_fields["audit_salt"].default:
        log.warning("MBC_CDS_AUDIT_SALT is the built-in default: set a secret per deployment, or the hashed "
                    "patient ids in audit rows can be matched against known ids")
    snoozes = SnoozeIndex(db)
    runtime = Runtime(settings=settings, db=db, audit=audit, knowledge=knowledge, terminology=terminology,
                      services=services, discovery=discovery_document(services.values()), http=http,
                      handler=build_handler(settings, http, terminology=terminology, knowledge=knowledge),
                      verifier=verifier,
                      snoozes=snoozes, clients=clients, jwks_http=jwks_http)
    # Snoozes end by the request clock, which tests and replays replace on the runtime.
    snoozes.clock = lambda: runtime.clock()
    snoozes.start()
    return runtime
