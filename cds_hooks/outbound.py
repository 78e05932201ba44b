"""Outbound HTTP limits: per origin, so one dead FHIR server cannot hold the connections every other EHR's
hooks need; per hook, so one hook cannot take all of its own server's slots.

Waiting for a slot counts against the hook's overall deadline (the resolver cancels it with the rest), so a
full origin costs its own hooks time, never anyone else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

__all__ = ["OriginLimiter", "origin_of", "outbound_client"]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class OriginLimiter:
    """At most `per_origin` requests in flight to one origin, across every hook of this process."""

    def __init__(self, per_origin: int) -> None:
        if per_origin < 1:
            raise ValueError("per_origin must be >= 1")
        self.per_origin = per_origin
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    def in_use(self, origin: str) -> int:
        sem = self._slots.get(origin)
        return 0 if sem is None else self.per_origin - sem._value  # noqa: SLF001 - read-only peek for tests

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        origin = origin_of(url)
        sem = self._slots.get(origin)
        if sem is None:
            sem = self._slots[origin] = asyncio.Semaphore(self.per_origin)
        self._users[origin] = self._users.get(origin, 0) + 1
        try:
            async with sem:
                yield
        finally:
            # Forget idle origins: with `*` allowed, callers choose the origins and the dict must not grow.
            self._users[origin] -= 1
            if not self._users[origin]:
                del self._users[origin]
                self._slots.pop(origin, None)


def outbound_client(timeout: httpx.Timeout, per_origin: int) -> httpx.AsyncClient:
    """The FHIR client: no pool-wide cap (the per-origin limiter bounds each origin, and a global cap is the
    shared resource one dead server used to exhaust); idle connections kept per origin, up to the same limit."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=4 * per_origin))
