"""The result cache: response bytes by content key."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol


class ResultCache(Protocol):
    """Where finished results live, keyed by content key."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...


class MemoryCache:
    """In-process LRU cache for the embedded mode, bounded in entries and in bytes (a value
    larger than ``max_bytes`` is not cached)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= len(old)
            if len(value) > self.max_bytes:
                return
            self._data[key] = value
            self.bytes += len(value)
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self.bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._data)
