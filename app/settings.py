"""Deployment settings, read from MBC_CDS_* environment variables or a .env file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cds_hooks.urlpolicy import AllowList

ResourceLevel = Literal["basic", "limited", "enhanced", "maximal"]
RESOURCE_LEVELS: tuple[str, ...] = ("basic", "limited", "enhanced", "maximal")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MBC_CDS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./mbc-cds.db"
    resource_level: ResourceLevel = "enhanced"
    require_jwt: bool = True
    clients_file: str | None = None
    # Path to a FHIR ConceptMap or JSON list adding a hospital's own codes to concepts (clinical rules v2 section 7).
    local_codes: str | None = None
    # Behind a proxy the JWT `aud` is the URL the EHR called, not the one uvicorn sees.
    public_base_url: str | None = None
    jwt_leeway_seconds: int = 30
    jwks_cache_seconds: float = 300.0

    acute_window_days: int = 30
    assessment_window_days: int = 90
    acp_revisit_days: int = 182
    info_card_cap: int = Field(default=5, ge=0)
    # At most this many cards for a patient without an emergency (info cards beyond it are listed on the overview).
    card_budget: int = Field(default=8, ge=1)
    # Snooze after an override, per reason (clinical-rules section 6); 0 = reported only, no snooze.
    snooze_already_addressed_days: int = Field(default=90, ge=0)
    snooze_patient_declined_days: int = Field(default=180, ge=0)
    snooze_not_appropriate_days: int = Field(default=30, ge=0)
    snooze_data_wrong_days: int = Field(default=0, ge=0)

    def snooze_days(self, reason: str | None) -> int:
        """Days an override with this reason code silences the rule for the patient (0: none)."""
        if not reason:
            return 0
        return int(getattr(self, f"snooze_{reason.replace('-', '_')}_days", 0) or 0)

    fhir_timeout_seconds: float = 8.0
    fhir_connect_timeout_seconds: float = 3.0
    fhir_max_pages: int = 50
    # One slow FHIR server must not take the outbound capacity other EHRs need (cds_hooks/outbound.py).
    fhir_max_connections_per_origin: int = Field(default=16, ge=1)
    fhir_max_concurrent_fetches_per_hook: int = Field(default=8, ge=1)
    # Resources read from a FHIR server for one hook, all keys together; unset: the prefetch cap.
    max_fetched_resources: int | None = Field(default=None, ge=1)
    jwks_timeout_seconds: float = Field(default=5.0, gt=0)

    # Database: a blackholed database gives a 503 in seconds, not a hung worker.
    db_connect_timeout_seconds: int = Field(default=5, ge=1)
    db_statement_timeout_seconds: float = Field(default=10.0, gt=0)
    replay_check_timeout_seconds: float = Field(default=3.0, gt=0)
    # Audit batches the database refused are appended here and written when it answers again.
    audit_spool_file: str = "./mbc-cds-audit-spool.jsonl"

    # order-select fires on every click: its evaluation of the record is kept (per worker) for order-sign.
    order_cache_size: int = Field(default=64, ge=0)
    order_cache_seconds: float = Field(default=600.0, gt=0)

    max_body_bytes: int = 20 * 1024 * 1024
    max_prefetch_resources: int = 100_000
    max_json_depth: int = 64

    audit_salt: str = "change-me-per-deployment"
    # Keys the card and suggestion uuids (HMAC); empty: the audit salt, the deployment's other secret.
    uuid_secret: str = ""
    acp_app_url: str | None = None
    assessment_form_url: str | None = None
    # Unset: "*" with JWT on (the JWT, not the browser, is the check); the service's own origin in demo mode.
    cors_origins: str | None = None
    log_level: str = "INFO"
    # Comma-separated URL prefixes the service may read as `fhirServer`; `*` allows any (except loopback with
    # JWT on). Required with JWT on (start-up refuses without it); empty in demo mode: any, loopback included.
    allowed_fhir_servers: str = ""
    # `mbc-cds serve`: a connection must complete its request headers within this time (slow-loris).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Trust X-Forwarded-* only from these proxy addresses (`mbc-cds serve`); empty: proxy headers ignored.
    forwarded_allow_ips: str = ""

    def fhir_allow_list(self) -> AllowList:
        return AllowList.parse(self.allowed_fhir_servers, allow_loopback=not self.require_jwt)

    def fhir_server_allowed(self, url: str) -> bool:
        return self.fhir_allow_list().allows(url)

    def cors_origin_list(self) -> list[str]:
        if self.cors_origins is not None:
            return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
        if self.require_jwt:
            return ["*"]
        # Demo mode: no cross-site callers; a page the service serves itself needs no CORS header.
        if self.public_base_url:
            parts = urlsplit(self.public_base_url)
            return [f"{parts.scheme}://{parts.netloc}"]
        return []

    def fetched_resource_cap(self) -> int:
        return self.max_fetched_resources or self.max_prefetch_resources

    def uuid_key(self) -> bytes:
        return (self.uuid_secret or self.audit_salt).encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
