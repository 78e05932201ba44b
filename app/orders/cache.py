"""A small per-worker LRU for what order-select computed, so that order-sign on the same drafts reuses it.

Keys are SHA-256 digests of everything the value depends on (patient id, the record as read, the draft orders,
the settings and the day), so a different patient, record or draft never meets another's entry. Entries also
expire after `ttl` seconds: the evaluation's clock must not drift far from the request's.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")


def cache_key(*parts: Any) -> str:
    """SHA-256 of the parts as JSON (objects whose JSON form orjson does not know are refused, not guessed)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(orjson.dumps(part))
        digest.update(b"\x1e")
    return digest.hexdigest()


class LruCache(Generic[V]):
    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = max(0, size)
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None or self.clock() - item[0] > self.ttl:
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: str, value: V) -> None:
        if self.size == 0:
            return
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
