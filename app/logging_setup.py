"""Structured JSON logs. Callers log ids, rule ids, counts and durations only: never patient data or tokens."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return orjson.dumps(payload, default=str).decode()


_URL = re.compile(r"(?i)\b(https?://[^/\s\"'<>]+)[^\s\"'<>]*")


def redact_urls(text: str) -> str:
    """Keep scheme://host[:port] of each URL, drop path and query (they carry patient ids)."""
    return _URL.sub(lambda m: m.group(1) + "/...", text)


class RedactUrlFilter(logging.Filter):
    """On third-party loggers that print request URLs (httpx): whatever level an operator turns them to,
    the patient id in `Condition?patient=...` or `Patient/123` does not reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is dropped rather than risked
            return False
        record.msg = redact_urls(message)
        record.args = None
        return True


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger("mbc_cds")
    if getattr(root, "_mbc_configured", False):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    root._mbc_configured = True  # type: ignore[attr-defined]
    # httpx logs full URLs at INFO, and URLs carry patient ids: keep it quiet, and redact them if it talks.
    httpx_log = logging.getLogger("httpx")
    httpx_log.setLevel(logging.WARNING)
    if not any(isinstance(f, RedactUrlFilter) for f in httpx_log.filters):
        httpx_log.addFilter(RedactUrlFilter())
