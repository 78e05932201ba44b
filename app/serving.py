"""How `mbc-cds serve` runs uvicorn: connection limits, a header timeout, no `server` header, proxy headers
only from configured proxies, JSON logs.

uvicorn closes idle keep-alive connections, but a client that sends its request headers one byte at a time
(slow-loris) is never timed out: `HeaderTimeoutH11Protocol` closes a connection whose request line and
headers are not complete within `timeout_header` seconds of its first byte (or of the connection opening).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.logging_setup import uvicorn_log_config
from app.settings import Settings, get_settings

DEFAULT_LIMIT_CONCURRENCY = 200
DEFAULT_TIMEOUT_KEEP_ALIVE = 5
DEFAULT_MAX_HEADER_BYTES = 32 * 1024  # room for the largest JWT accepted (16 KiB) and the other headers


class HeaderTimeoutH11Protocol(H11Protocol):
    """Read from the settings (MBC_CDS_HEADER_TIMEOUT_SECONDS), not a class attribute: worker processes
    re-import this module and only the environment reaches them."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.timeout_header = get_settings().header_timeout_seconds
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # a new request begins: its headers get the same bound
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.timeout_header, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "info"
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    timeout_keep_alive: int = DEFAULT_TIMEOUT_KEEP_ALIVE
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES


def uvicorn_kwargs(options: ServeOptions, settings: Settings) -> dict[str, Any]:
    proxies = settings.forwarded_allow_ips.strip()
    return {
        "host": options.host, "port": options.port, "workers": options.workers, "log_level": options.log_level,
        "log_config": uvicorn_log_config(options.log_level),
        # uvicorn trusts X-Forwarded-* from 127.0.0.1 unless told otherwise: only from configured proxies here.
        "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None,
        "server_header": False,
        "limit_concurrency": options.limit_concurrency, "timeout_keep_alive": options.timeout_keep_alive,
        "http": HeaderTimeoutH11Protocol,
        "h11_max_incomplete_event_size": options.max_header_bytes,
    }
