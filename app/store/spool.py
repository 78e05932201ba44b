"""Audit rows the database could not take, kept on local disk until it can.

Each batch is one JSON line appended with a single `write()` on an O_APPEND file, so worker processes that
share the file do not interleave lines. Replaying renames the file to a name only this process knows first:
two workers never replay the same rows. The rows hold what the audit table holds (hashed patient id, rule ids,
card uuids, counts): no patient data, no tokens.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("mbc_cds.audit")


class AuditSpool:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, rows: Iterable[dict[str, Any]]) -> bool:
        data = b"".join(orjson.dumps(r, default=_iso) + b"\n" for r in rows)
        if not data:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return True
        except OSError as exc:
            log.error("audit spool could not be written: rows lost", extra={"errno": exc.errno})
            return False

    def pending(self) -> bool:
        return self.path.exists() or any(self._orphans())

    def replay(self, write: Callable[[list[dict[str, Any]]], None]) -> int:
        """Hand every spooled row to `write` (one call per file; it raises to keep the rows spooled)."""
        total = 0
        for file in [*self._orphans(), *self._claim()]:
            rows = self._read(file)
            try:
                if rows:
                    write(rows)
            except Exception:  # noqa: BLE001 - still down: the rows go back to the spool
                if self.append(rows):
                    file.unlink(missing_ok=True)
                raise
            file.unlink(missing_ok=True)
            total += len(rows)
        return total

    def _claim(self) -> list[Path]:
        mine = self.path.with_name(f"{self.path.name}.{os.getpid()}.{time.time_ns()}.replay")
        try:
            os.rename(self.path, mine)
        except FileNotFoundError:
            return []
        return [mine]

    def _orphans(self) -> list[Path]:
        """Replay files of processes that died while replaying."""
        out = []
        for file in self.path.parent.glob(f"{self.path.name}.*.replay"):
            pid = file.name[len(self.path.name) + 1:].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                out.append(file)
        return out

    @staticmethod
    def _read(file: Path) -> list[dict[str, Any]]:
        rows = []
        for line in file.read_bytes().splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by a crash mid-write: the rest still counts
            if isinstance(row, dict):
                rows.append(row)
        return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError
