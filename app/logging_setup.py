"""Structured JSON logs. Callers log ids, rule ids, counts and durations only: never patient data or tokens."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# color_message: uvicorn's copy of the message with terminal colour codes.
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    # Every hook writes two lines (uvicorn's access line, "hook answered"): the timestamp text is made once a second.
    _second: int = -1
    _stamp: str = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self._timestamp(record),
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


class StderrJsonHandler(logging.StreamHandler[TextIO]):
    """JSON lines on whatever sys.stderr is at the time of the record (test capture, a redirected stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


# Loggers that get the JSON handler themselves (and stop propagating, so nothing prints twice); every other
# logger reaches the root, which gets the same handler. uvicorn configures its loggers when its Config is
# built, which can be after this module runs: `configure_logging` is called again at start-up to take them back.
_OWN_HANDLER = ("mbc_cds", "uvicorn", "uvicorn.access")


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """`log_config` for uvicorn.run: its loggers write through the same JSON formatter from the first line."""
    handler = {"class": "app.logging_setup.StderrJsonHandler"}
    return {"version": 1, "disable_existing_loggers": False, "handlers": {"json": handler},
            "loggers": {"uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
                        "uvicorn.error": {"level": level.upper(), "propagate": True},
                        "uvicorn.access": {"handlers": ["json"], "level": level.upper(), "propagate": False}}}


def configure_logging(level: str = "INFO") -> None:
    # The JSON lines name no source line, thread or process: do not collect them for every record (the
    # "Optimization" settings of the logging HOWTO; finding the caller walks the stack on every call).
    setattr(logging, "_srcfile", None)  # noqa: B010 - a private module setting, set as the HOWTO says
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _shared_handler()
    for name in _OWN_HANDLER:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not _replaced(h)]
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("uvicorn.error").handlers = []
    logging.getLogger("uvicorn.error").propagate = True
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not _replaced(h)]
    if handler not in root.handlers:
        root.addHandler(handler)
    for name in ("mbc_cds", "cds_hooks"):
        logging.getLogger(name).setLevel(level.upper())
    # httpx logs full URLs at INFO, and URLs carry patient ids: keep it quiet, and redact them if it talks.
    httpx_log = logging.getLogger("httpx")
    httpx_log.setLevel(logging.WARNING)
    if not any(isinstance(f, RedactUrlFilter) for f in httpx_log.filters):
        httpx_log.addFilter(RedactUrlFilter())


_HANDLER: list[StderrJsonHandler] = []


def _shared_handler() -> StderrJsonHandler:
    if not _HANDLER:
        _HANDLER.append(StderrJsonHandler())
    return _HANDLER[0]


def _replaced(handler: logging.Handler) -> bool:
    # Another StderrJsonHandler is uvicorn's copy from `uvicorn_log_config`: one handler per logger, or each
    # line is printed twice.
    return _is_plain_stream(handler) or (isinstance(handler, StderrJsonHandler) and handler is not _shared_handler())


def _is_plain_stream(handler: logging.Handler) -> bool:
    """A handler printing text to the console (uvicorn's defaults, basicConfig): replaced by the JSON one.
    Handlers of other kinds or to other streams (files, a test's capture) are left alone."""
    consoles = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return type(handler) is logging.StreamHandler and any(handler.stream is c for c in consoles)
