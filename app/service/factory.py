"""The one place the service is wired from the settings: terminology, knowledge, engines, FHIR resolver.

The routes, the CLI, the worklist (in-process and on Spark workers), the viewer, the tests and the benchmarks
all build their evaluator or handler here, so that an offline evaluation and a hook call run the same rules
with the same options.
"""

from __future__ import annotations

import logging

import httpx

from app.engine.knowledge import Knowledge
from app.service.evaluate import RecordEvaluator
from app.service.handle import HookHandler
from app.service.knowledge import load_knowledge
from app.settings import Settings
from cds_hooks.fallback import PrefetchResolver
from cds_hooks.outbound import OriginLimiter
from terminology import Terminology, get_terminology
from terminology.local_codes import LocalCodesError, load_local_codes

log = logging.getLogger("mbc_cds.runtime")


def terminology_for(settings: Settings) -> Terminology:
    """The shared terminology plus the deployment's site-local codes (MBC_CDS_LOCAL_CODES), validated."""
    try:
        return load_local_codes(settings.local_codes, get_terminology())
    except LocalCodesError as exc:
        # One clear line in the log before start-up stops; the exception carries the same message.
        log.error("start-up stopped: %s", exc)
        raise


def build_evaluator(settings: Settings, *, terminology: Terminology | None = None,
                    knowledge: Knowledge | None = None) -> RecordEvaluator:
    """The pure evaluator; `terminology` and `knowledge` when the caller already holds them (shared)."""
    return RecordEvaluator(settings, terminology if terminology is not None else terminology_for(settings),
                           knowledge if knowledge is not None else load_knowledge())


def build_handler(settings: Settings, http: httpx.AsyncClient, *, terminology: Terminology | None = None,
                  knowledge: Knowledge | None = None) -> HookHandler:
    """The hook handler reading through `http` (owned by the caller), over the evaluator `build_evaluator`
    gives for the same arguments."""
    resolver = PrefetchResolver(
        http, max_pages=settings.fhir_max_pages, timeout_total=settings.fhir_timeout_seconds,
        limiter=OriginLimiter(settings.fhir_max_connections_per_origin),
        per_hook=settings.fhir_max_concurrent_fetches_per_hook, max_resources=settings.fetched_resource_cap(),
        url_allowed=settings.fhir_allow_list().allows)
    return HookHandler(build_evaluator(settings, terminology=terminology, knowledge=knowledge), resolver)
