"""Structured JSON logs. Callers log ids, rule ids, counts and durations only: never patient data or tokens."""

from __future__ import annotations

import logging
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
    # httpx logs full URLs at INFO, and URLs carry patient ids: keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
