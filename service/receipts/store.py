"""Where receipts live: Redis in distributed mode, a SQLite file in embedded mode.

Both are written by worker processes (idempotently: a receipt id is derived from the
request, so a recomputation keeps the first record) and read by the gateway from any of
its threads. Receipts arrive signed (``service.receipts.signing``); the stores keep bytes.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from service.jobs import redis_keys as keys

SQLITE_PREFIX = "sqlite://"
BUSY_TIMEOUT_MS = 30_000
EXISTS_BATCH = 1000
CLOCK_SKEW_SECONDS = 3600  # an index entry is pruned an hour after its receipt expired


class ReceiptStore(Protocol):
    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        """Store receipts that are not stored yet (a receipt is immutable once written)."""

    def get(self, receipt_id: str) -> dict[str, Any] | None: ...

    def count_for_version(self, version_id: str) -> int:
        """How many stored receipts refer to a model version."""

    def purge(self, older_than: float) -> int:
        """Delete receipts issued before the epoch time ``older_than``; how many went."""


class SqliteReceipts:
    """One table in a SQLite file, safe from any thread and process: a connection per
    thread (a sqlite3 connection must stay in its thread), WAL so that worker processes
    write while the gateway reads, and a busy timeout for concurrent writers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_pid: int | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork)."""
        local = self._local
        if getattr(local, "db", None) is None or local.pid != os.getpid():
            local.db, local.pid = self._connect(), os.getpid()
        db: sqlite3.Connection = local.db
        return db

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        with self._schema_lock:
            if self._schema_pid != os.getpid():
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS receipts (id TEXT PRIMARY KEY, version TEXT "
                    "NOT NULL, issued_at REAL NOT NULL, body BLOB NOT NULL)"
                )
                db.execute("CREATE INDEX IF NOT EXISTS receipts_version ON receipts (version)")
                db.execute("CREATE INDEX IF NOT EXISTS receipts_issued ON receipts (issued_at)")
                self._schema_pid = os.getpid()
        return db

    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        rows = [(r["receipt_id"], r["version"], r["issued_at"], orjson.dumps(r)) for r in receipts]
        db = self.db
        db.execute("BEGIN IMMEDIATE")  # one transaction (one WAL commit) for the chunk
        try:
            db.executemany("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get(self, receipt_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def count_for_version(self, version_id: str) -> int:
        query = "SELECT COUNT(*) FROM receipts WHERE version = ?"
        return int(self.db.execute(query, (version_id,)).fetchone()[0])

    def purge(self, older_than: float) -> int:
        cursor = self.db.execute("DELETE FROM receipts WHERE issued_at < ?", (older_than,))
        return cursor.rowcount


class RedisReceipts:
    """One string key per receipt plus a sorted set per model version; TTL only with
    retention. The index entries of expired receipts are pruned as new ones are written,
    so the index does not outgrow the receipts it indexes."""

    def __init__(self, url: str, retention_seconds: float | None) -> None:
        import redis

        from service.jobs.redis_store import redis_retry

        # one client per process; its connection pool serves any thread
        self.redis = redis.Redis.from_url(url, socket_timeout=10, **redis_retry())
        self.retention = retention_seconds

    def put_many(self, receipts: list[dict[str, Any]]) -> None:
        ttl = None if self.retention is None else max(1, int(self.retention))
        expires = math.inf if ttl is None else time.time() + ttl
        with self.redis.pipeline(transaction=False) as pipe:
            for r in receipts:
                pipe.set(keys.receipt(r["receipt_id"]), orjson.dumps(r), nx=True, ex=ttl)
                # gt: a receipt written again after it expired keeps the later expiry
                pipe.zadd(
                    keys.receipts_by_version(r["version"]), {r["receipt_id"]: expires}, gt=True
                )
            if ttl is not None:
                for version in {r["version"] for r in receipts}:
                    pipe.zremrangebyscore(keys.receipts_by_version(version), "-inf", _expired())
            pipe.execute()

    def get(self, receipt_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.receipt(receipt_id))
        return None if raw is None else orjson.loads(raw)

    def count_for_version(self, version_id: str) -> int:
        index = keys.receipts_by_version(version_id)
        self.redis.zremrangebyscore(index, "-inf", _expired())
        members = [m.decode() for m in self.redis.zrange(index, 0, -1)]
        return self._alive(members) + self._legacy_count(version_id)

    def _legacy_count(self, version_id: str) -> int:
        legacy = keys.receipts_of_version(version_id)
        members = [m.decode() for m in self.redis.smembers(legacy)]
        alive = self._alive(members)
        if members and alive == 0:  # all expired under retention: the index is stale
            self.redis.delete(legacy)
        return alive

    def _alive(self, receipt_ids: list[str]) -> int:
        return sum(
            int(self.redis.exists(*[keys.receipt(r) for r in receipt_ids[i : i + EXISTS_BATCH]]))
            for i in range(0, len(receipt_ids), EXISTS_BATCH)
        )

    def purge(self, older_than: float) -> int:
        return 0  # retention in Redis is each receipt's TTL


def _expired() -> str:
    """The score below which index entries are certainly expired: by more than the clock
    skew between the hosts that write receipts (exclusive bound)."""
    return f"({time.time() - CLOCK_SKEW_SECONDS}"


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
