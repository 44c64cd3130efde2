"""The gateway's side of a job on a real redis-server, a worker played by the job store:
a waiting request reads the job once, when it is over, and a result is joined from its
chunks without parsing them, byte for byte as the parsing assembler joins them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from service.gateway.documents import assemble, splice
from service.jobs import redis_keys as keys
from service.jobs.backend import JobView
from service.jobs.celery_app import BATCH
from service.jobs.distributed import RedisJobs
from service.jobs.redis_store import RedisJobStore
from service.jobs.spec import TaskSpec
from service.jobs.store import JobState
from service.settings import Settings
from tests.distributed.conftest import RedisProcess

SPECS: list[TaskSpec] = [{"kind": "ping"}, {"kind": "ping"}, {"kind": "ping"}]
ROWS = [[{"x": 0.1, "name": "é"}], [], [{"x": 1e-300}, {"x": None}]]
HEADER = {"model": "m", "version": "v", "seed": 7}


@pytest.fixture
def settings(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Settings]:
    redis.Redis.from_url(redis_server.url).flushdb()
    yield Settings(redis_url=redis_server.url, models_dir=tmp_path, reconcile_seconds=300)


def _view(job_id: str) -> JobView:
    return JobView(
        job_id, "explain", "m", "v", JobState.queued, 0.0, time.time(), cache_key="k-" + job_id
    )


def _work(url: str, job_id: str) -> None:
    """A worker: claims each chunk (a 'running' event), then records its rows."""
    store = RedisJobStore(redis.Redis.from_url(url), 3600)
    submission = store.client.hget(keys.job(job_id), "submission").decode()
    for index, rows in enumerate(ROWS):
        assert store.claim(job_id, submission, index) is not None
        time.sleep(0.05)
        store.chunk_done(job_id, submission, index, rows)


def test_a_waiting_request_reads_the_job_once_when_it_is_over(settings: Settings) -> None:
    async def scenario() -> None:
        jobs = RedisJobs(settings, assemble, splice)
        await jobs.start()
        while (await jobs.redis.pubsub_numsub(keys.EVENTS_CHANNEL))[0][1] < 1:
            await asyncio.sleep(0.01)  # listening (a new subscription wakes every waiter)
        await asyncio.sleep(0.1)
        reads: list[str] = []
        original = jobs.view

        async def counted(job_id: str) -> JobView | None:
            reads.append(job_id)
            return await original(job_id)

        jobs.view = counted  # type: ignore[method-assign]
        try:
            worker = asyncio.create_task(asyncio.to_thread(_wait_then_work, settings, "job-a"))
            done = await jobs.run(_view("job-a"), SPECS, HEADER, BATCH, 30)
            await worker
            assert done is not None and done.state is JobState.succeeded
            assert reads == ["job-a"]  # not woken by its "running" event
            again = await jobs.run(_view("job-a"), SPECS, HEADER, BATCH, 30)
            assert again is not None and again.state is JobState.succeeded  # coalesced
        finally:
            await jobs.stop()

    asyncio.run(scenario())


def _wait_then_work(settings: Settings, job_id: str) -> None:
    client = redis.Redis.from_url(str(settings.redis_url))
    deadline = time.monotonic() + 10
    while not client.exists(keys.job(job_id)):
        assert time.monotonic() < deadline, "the job was never created"
        time.sleep(0.01)
    _work(str(settings.redis_url), job_id)


def test_a_spliced_result_is_the_parsed_assembly_byte_for_byte(settings: Settings) -> None:
    async def scenario() -> None:
        spliced, parsed = RedisJobs(settings, assemble, splice), RedisJobs(settings, assemble)
        try:
            await spliced.submit(_view("job-b"), SPECS, HEADER, BATCH)
            await asyncio.to_thread(_work, str(settings.redis_url), "job-b")
            body = await spliced.result("job-b")
            rows = [row for part in ROWS for row in part]
            assert body == assemble("explain", HEADER, rows)
            assert orjson.loads(body)["results"] == rows
            cached, view = await spliced.lookup("k-job-b", "job-b")
            assert cached == body and view is not None and view.state is JobState.succeeded
            await spliced.redis.delete(keys.result("k-job-b"))
            assert await parsed.result("job-b") == body  # the parsing path, from the chunks
            assert await spliced.lookup("k-unknown", "job-unknown") == (None, None)
        finally:
            await spliced.redis.aclose()
            await parsed.redis.aclose()

    asyncio.run(scenario())


def test_splice_declines_documents_that_are_not_header_plus_rows() -> None:
    assert splice("global", b"{}", [b"[{}]"]) is None
    assert splice("explain", b"{}", [b"[1]", b"[]", b"[2,3]"]) == b'{"results":[1,2,3]}'
    assert splice("predict", b'{"a":1}', []) == b'{"a":1,"predictions":[]}'
