"""Receipt stores: immutable once written, counted per version, retention applied."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.jobs import redis_keys as keys
from service.receipts import store as receipt_store
from service.receipts.record import RECEIPT_PREFIX, differences
from service.receipts.store import CLOCK_SKEW_SECONDS, RedisReceipts, SqliteReceipts
from tests.distributed.conftest import RedisProcess


def receipt_id(job: str, number: int) -> str:
    return f"{RECEIPT_PREFIX}{job}-{number}"


def receipt(number: int, version: str = "v1", issued_at: float | None = None) -> dict[str, Any]:
    return {
        "receipt_id": receipt_id("job", number),
        "version": version,
        "issued_at": time.time() if issued_at is None else issued_at,
        "response": {"decision": "denied", "reasons": [{"code": "CR02"}]},
    }


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def test_sqlite_receipts_are_written_once_counted_and_purged(tmp_path: Path) -> None:
    store = SqliteReceipts(tmp_path / "nested" / "receipts.sqlite3")
    old = receipt(1, issued_at=time.time() - 10 * 86_400)
    store.put_many([old, receipt(2), receipt(3, version="v2")])
    store.put_many([{**receipt(2), "response": {"decision": "approved"}}])  # ignored
    assert store.get(receipt_id("job", 2))["response"]["decision"] == "denied"
    assert store.get("rcpt_unknown") is None
    assert store.count_for_version("v1") == 2 and store.count_for_version("v2") == 1
    assert store.purge(older_than=time.time() - 86_400) == 1
    assert store.get(old["receipt_id"]) is None and store.count_for_version("v1") == 1
    # another store on the same file (the gateway after a restart) sees the same receipts
    assert SqliteReceipts(store.path).get(receipt_id("job", 3))["version"] == "v2"


def test_redis_receipts_keep_forever_or_for_the_retention(redis_server: RedisProcess) -> None:
    forever = RedisReceipts(redis_server.url, None)
    forever.put_many([receipt(10), receipt(11, version="v9")])
    assert forever.redis.ttl(f"xai:receipt:{receipt_id('job', 10)}") == -1
    assert forever.get(receipt_id("job", 11))["version"] == "v9"
    assert forever.count_for_version("v9") == 1

    kept_a_day = RedisReceipts(redis_server.url, 86_400)
    kept_a_day.put_many([receipt(12, version="v8")])
    ttl = kept_a_day.redis.ttl(f"xai:receipt:{receipt_id('job', 12)}")
    assert 86_000 < ttl <= 86_400
    kept_a_day.redis.delete(f"xai:receipt:{receipt_id('job', 12)}")  # as if it expired
    assert kept_a_day.count_for_version("v8") == 0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


def test_the_redis_index_drops_receipts_long_expired(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(receipt_store, "time", clock)
    store = RedisReceipts(redis_server.url, 60)
    index = keys.receipts_by_version("v7")
    store.put_many([receipt(100 + i, version="v7") for i in range(50)])
    assert store.redis.zcard(index) == 50
    assert store.count_for_version("v7") == 50
    clock.now += 60 + CLOCK_SKEW_SECONDS + 1  # every one of them expired over an hour ago
    store.put_many([receipt(200, version="v7")])
    assert store.redis.zcard(index) == 1
    assert store.redis.zscore(index, receipt_id("job", 200)) == pytest.approx(clock.now + 60)


def test_receipts_indexed_before_the_sorted_set_still_count(redis_server: RedisProcess) -> None:
    store = RedisReceipts(redis_server.url, None)
    old = receipt(300, version="v6")
    store.redis.set(keys.receipt(old["receipt_id"]), b"{}")
    store.redis.sadd(keys.receipts_of_version("v6"), old["receipt_id"])  # the old layout
    store.put_many([receipt(301, version="v6")])
    assert store.count_for_version("v6") == 2


def test_differences_name_each_differing_leaf() -> None:
    stored = {"decision": "denied", "reasons": [{"code": "A", "contribution": 1.0}], "x": [1]}
    replayed = {"decision": "denied", "reasons": [{"code": "B", "contribution": 1.0}], "x": [1, 2]}
    assert differences(stored, replayed) == [
        {"path": "reasons[0].code", "stored": "A", "replayed": "B"},
        {"path": "x", "stored": [1], "replayed": [1, 2]},
    ]
    assert differences(stored, stored) == []
