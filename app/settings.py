"""Deployment settings, read from MBC_CDS_* environment variables or a .env file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    info_card_cap: int = Field(default=8, ge=0)

    fhir_timeout_seconds: float = 8.0
    fhir_connect_timeout_seconds: float = 3.0
    fhir_max_pages: int = 50

    # order-select fires on every click: its evaluation of the record is kept (per worker) for order-sign.
    order_cache_size: int = Field(default=64, ge=0)
    order_cache_seconds: float = Field(default=600.0, gt=0)

    max_body_bytes: int = 20 * 1024 * 1024
    max_prefetch_resources: int = 100_000
    max_json_depth: int = 64

    audit_salt: str = "change-me-per-deployment"
    acp_app_url: str | None = None
    assessment_form_url: str | None = None
    cors_origins: str = "*"
    log_level: str = "INFO"
    # Comma-separated URL prefixes the service may read as `fhirServer` (empty: any). Without it, a caller the
    # service trusts can make it fetch any http(s) URL.
    allowed_fhir_servers: str = ""

    def fhir_server_allowed(self, url: str) -> bool:
        prefixes = [p.strip().rstrip("/") for p in self.allowed_fhir_servers.split(",") if p.strip()]
        if not prefixes:
            return True
        url = url.rstrip("/")
        return any(url == p or url.startswith(p + "/") for p in prefixes)

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
