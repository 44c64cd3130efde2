"""Receipt stores under concurrency: any thread, any process, no error (issue 10: one
SQLite connection shared by the gateway's threads made 9 of 20 concurrent reads 500)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.receipts.store import RedisReceipts, SqliteReceipts
from tests.conftest import bearer
from tests.distributed.conftest import RedisProcess

MODEL = "german-credit"
QUICK = {"recourse": {"enabled": False}}
READS_PER_THREAD = 200


def _record(writer: int, number: int) -> dict[str, Any]:
    return {
        "receipt_id": f"rcpt_w{writer}_{number:04d}",
        "version": f"v{writer}",
        "issued_at": time.time(),
        "response": {"decision": "denied", "n": number},
    }


def _write(location: str, writer: int, count: int) -> None:
    store = SqliteReceipts(Path(location))
    for start in range(0, count, 10):
        store.put_many([_record(writer, n) for n in range(start, start + 10)])


def _hammer(store: SqliteReceipts | RedisReceipts, ids: list[str]) -> Counter[str]:
    """Reads and counts from 16 threads at once; what each call gave."""

    def reads(worker: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for i in range(READS_PER_THREAD):
            try:
                found = store.get(ids[(worker + i) % len(ids)])
                seen["found" if found else "missing"] += 1
                if i % 20 == 0:
                    store.count_for_version("v0")
            except Exception as exc:  # noqa: BLE001 - counted: there must be none
                seen[type(exc).__name__] += 1
        return seen

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(reads, range(16)), Counter())


def test_sqlite_store_from_many_threads_while_processes_write(tmp_path: Path) -> None:
    path = tmp_path / "receipts.sqlite3"
    store = SqliteReceipts(path)
    store.put_many([_record(0, n) for n in range(50)])
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write, args=(str(path), w, 300)) for w in (1, 2)]
    for process in writers:
        process.start()
    seen = _hammer(store, [f"rcpt_w0_{n:04d}" for n in range(50)])
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert seen == Counter(found=16 * READS_PER_THREAD)
    assert store.count_for_version("v1") == store.count_for_version("v2") == 300
    assert store.purge(older_than=time.time() + 1) == 650


def test_redis_store_from_many_threads(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path).start()
    try:
        store = RedisReceipts(server.url, None)
        store.put_many([_record(0, n) for n in range(50)])
        seen = _hammer(store, [f"rcpt_w0_{n:04d}" for n in range(50)])
        assert seen == Counter(found=16 * READS_PER_THREAD)
    finally:
        server.stop()


async def _storm(base_url: str, headers: dict[str, str], ids: list[str], verifies: int) -> Counter:
    """200 concurrent requests: reads of every receipt and ``verifies`` verifications."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=180, limits=limits
    ) as http:

        async def one(i: int) -> str:
            receipt_id = ids[i % len(ids)]
            if i < verifies:
                response = await http.post(f"/v1/receipts/{receipt_id}/verify")
                ok = response.status_code == 200 and response.json()["match"] is True
                return "verified" if ok else f"verify {response.status_code} {response.text}"
            response = await http.get(f"/v1/receipts/{receipt_id}")
            ok = response.status_code == 200 and response.json()["receipt_id"] == receipt_id
            return "read" if ok else f"read {response.status_code} {response.text}"

        return Counter(await asyncio.gather(*(one(i) for i in range(200))))


def _receipts(client: httpx.Client, applicants: list[dict[str, Any]]) -> list[str]:
    batch = client.post(
        f"/v1/models/{MODEL}/adverse-action/batch",
        json={"applicants": applicants[10:18], "options": QUICK, "wait": 120},
    )
    assert batch.status_code == 200, batch.text
    return [r["receipt_id"] for r in batch.json()["results"]]


def test_200_concurrent_reads_and_verifies_embedded(
    client: httpx.Client, server: Any, applicants: list[dict[str, Any]]
) -> None:
    ids = _receipts(client, applicants)
    outcome = asyncio.run(_storm(server.url, {}, ids, verifies=100))
    assert outcome == Counter(verified=100, read=100)


@pytest.mark.timeout(600)
def test_200_concurrent_reads_and_verifies_distributed(
    tenant_cluster: Any, applicants: list[dict[str, Any]]
) -> None:
    headers = bearer("bank-a-officer")
    with httpx.Client(base_url=tenant_cluster.gateway.url, headers=headers, timeout=120) as http:
        ids = _receipts(http, applicants)
    # verifies replay through the Celery workers (two here); reads hit Redis
    outcome = asyncio.run(_storm(tenant_cluster.gateway.url, headers, ids, verifies=40))
    assert outcome == Counter(verified=40, read=160)
