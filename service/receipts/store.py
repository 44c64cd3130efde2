"""Where receipts live: Redis in distributed mode, a SQLite file in embedded mode.

Both are written by worker processes (idempotently: a receipt id is derived from the
request, so a recomputation writes the same record) and read by the gateway.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

import orjson

from service.jobs import redis_keys as keys

SQLITE_PREFIX = "sqlite://"
BUSY_TIMEOUT_MS = 30_000


class ReceiptStore(Protocol):
    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        """Store receipts that are not stored yet (a receipt is immutable once written)."""

    def get(self, receipt_id: str) -> dict[str, Any] | None: ...

    def count_for_version(self, version_id: str) -> int:
        """How many stored receipts refer to a model version."""

    def purge(self, older_than: float) -> int:
        """Delete receipts issued before the epoch time ``older_than``; how many went."""


class SqliteReceipts:
    """One table in a SQLite file (WAL: worker processes write while the gateway reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        # one connection per thread (the gateway reads from asyncio.to_thread's pool, and
        # SQLite refuses a connection used by another thread), never across a fork
        if getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS receipts (id TEXT PRIMARY KEY, version TEXT NOT NULL,"
                " issued_at REAL NOT NULL, body BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS receipts_version ON receipts (version)")
            db.execute("CREATE INDEX IF NOT EXISTS receipts_issued ON receipts (issued_at)")
            self._local.db, self._local.pid = db, os.getpid()
        connection: sqlite3.Connection = self._local.db
        return connection

    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        rows = [(r["receipt_id"], r["version"], r["issued_at"], orjson.dumps(r)) for r in receipts]
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?)", rows)

    def get(self, receipt_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def count_for_version(self, version_id: str) -> int:
        query = "SELECT COUNT(*) FROM receipts WHERE version = ?"
        return int(self.db.execute(query, (version_id,)).fetchone()[0])

    def purge(self, older_than: float) -> int:
        with self.db:
            cursor = self.db.execute("DELETE FROM receipts WHERE issued_at < ?", (older_than,))
        return cursor.rowcount


class RedisReceipts:
    """One string key per receipt plus a set per model version; TTL only with retention."""

    def __init__(self, url: str, retention_seconds: float | None) -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        self.retention = retention_seconds

    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        ttl = None if self.retention is None else max(1, int(self.retention))
        with self.redis.pipeline(transaction=False) as pipe:
            for r in receipts:
                pipe.set(keys.receipt(r["receipt_id"]), orjson.dumps(r), nx=True, ex=ttl)
                pipe.sadd(keys.receipts_of_version(r["version"]), r["receipt_id"])
            pipe.execute()

    def get(self, receipt_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.receipt(receipt_id))
        return None if raw is None else orjson.loads(raw)

    def count_for_version(self, version_id: str) -> int:
        members = [m.decode() for m in self.redis.smembers(keys.receipts_of_version(version_id))]
        if not members:
            return 0
        alive = self.redis.exists(*[keys.receipt(m) for m in members])
        if alive == 0:  # all expired under retention: the index is stale
            self.redis.delete(keys.receipts_of_version(version_id))
        return int(alive)

    def purge(self, older_than: float) -> int:
        return 0  # retention in Redis is each receipt's TTL


_opened: dict[str, ReceiptStore] = {}


def open_receipts(location: str, retention_seconds: float | None = None) -> ReceiptStore:
    """The store at ``location`` (``sqlite:///abs/path`` or a ``redis://`` URL), one per
    process."""
    store = _opened.get(location)
    if store is None:
        if location.startswith(SQLITE_PREFIX):
            store = SqliteReceipts(Path(location.removeprefix(SQLITE_PREFIX)))
        else:
            store = RedisReceipts(location, retention_seconds)
        _opened[location] = store
    return store
