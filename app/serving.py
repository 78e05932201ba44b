"""How `mbc-cds serve` runs uvicorn: connection limits, a header timeout, a header size limit, no `server` header,
proxy headers only from configured proxies, JSON logs.

uvicorn closes idle keep-alive connections, but a client that sends its request headers one byte at a time
(slow-loris) is never timed out, and its httptools protocol buffers a request head of any size:
`GuardedHttpToolsProtocol` closes a connection whose request line and headers are not complete within
`timeout_header` seconds of its first byte (or of the connection opening), and answers 400 to a head over
`--max-header-bytes`. httptools (llhttp, in C) rather than h11 (pure Python): it is what a bare uvicorn runs (the
benchmark floor too), and it parses a request head faster (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.logging_setup import uvicorn_log_config
from app.settings import Settings, get_settings

DEFAULT_LIMIT_CONCURRENCY = 200
DEFAULT_TIMEOUT_KEEP_ALIVE = 5
DEFAULT_MAX_HEADER_BYTES = 32 * 1024  # room for the largest JWT accepted (16 KiB) and the other headers


_BAD_REQUEST = "Invalid HTTP request received."  # uvicorn's own answer to a malformed request


class HeadTooLarge(Exception):
    """A request line and headers over `--max-header-bytes`."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the time and the bytes a request head may take. The timeout is
    read from the settings (MBC_CDS_HEADER_TIMEOUT_SECONDS), not a class attribute: worker processes re-import
    this module and only the environment reaches them; the size limit is uvicorn's own
    `h11_max_incomplete_event_size` setting, which means the same for h11."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.timeout_header = get_settings().header_timeout_seconds
        self.max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self._in_head = True     # between requests or inside a request line / headers
        self._head_bytes = 0            # reads of an incomplete head
        self._parsed_head_bytes = 0     # request line and headers parsed so far
        self._heads_done = 0
        self._header_timer: asyncio.TimerHandle | None = None
        # asyncio hands a stream protocol a Transport; uvicorn's protocol declares exactly that.
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        heads_before, was_in_head = self._heads_done, self._in_head
        super().data_received(data)
        # A head split over reads is held by the parser until it completes: count the reads that completed no head,
        # so that an endless header is refused at the limit plus one read. Complete heads are measured exactly by
        # on_url / on_header.
        if was_in_head and self._heads_done == heads_before and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._cancel_header_timer()
                self.send_400_response(_BAD_REQUEST)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > self.max_head_bytes:
            # Raised inside a parser callback: uvicorn answers it as any malformed request (400, connection closed).
            raise HeadTooLarge(f"request head over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head_bytes = 0
        self._arm_header_timer()  # a new request begins: its head gets the same bound

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_done += 1
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

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
        if self._in_head and not self.transport.is_closing():
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
        "http": GuardedHttpToolsProtocol,
        "h11_max_incomplete_event_size": options.max_header_bytes,
    }
