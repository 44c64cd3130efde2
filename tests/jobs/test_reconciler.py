"""The reconciler and the job scripts on a real redis-server, with no worker running: what
the broker holds is read from (and put into) its real Redis lists."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from service.jobs import redis_keys as keys
from service.jobs.backend import JobView
from service.jobs.broker import queue_lists, tasks_in_broker
from service.jobs.celery_app import BATCH, chunk_task_id
from service.jobs.distributed import RedisJobs
from service.jobs.redis_store import RedisJobStore
from service.jobs.spec import TaskSpec
from service.jobs.store import JobState
from service.settings import Settings
from tests.distributed.conftest import RedisProcess

INTERVAL = 0.2
TAKE_ONE = """
import sys, time
from kombu import Connection
channel = Connection(sys.argv[1]).default_channel
print("taken" if channel.basic_get("batch", no_ack=False) else "none", flush=True)
time.sleep(60)
"""
SPECS: list[TaskSpec] = [{"kind": "ping"}, {"kind": "ping"}, {"kind": "ping"}]


@pytest.fixture
def settings(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Settings]:
    redis.Redis.from_url(redis_server.url).flushdb()
    yield Settings(redis_url=redis_server.url, models_dir=tmp_path, reconcile_seconds=INTERVAL)


def _view(job_id: str) -> JobView:
    return JobView(job_id, "explain", "m", "v", JobState.queued, 0.0, time.time())


def _assemble(kind: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"results": rows})


async def _submitted(jobs: RedisJobs, job_id: str) -> str:
    await jobs.submit(_view(job_id), SPECS, {}, BATCH)
    submission = await jobs.redis.hget(keys.job(job_id), "submission")
    await asyncio.sleep(INTERVAL * 1.5)  # older than the reconciler's grace period
    return submission.decode()


def test_chunks_the_broker_lost_are_sent_again_once_confirmed(settings: Settings) -> None:
    async def scenario() -> None:
        jobs = RedisJobs(settings, _assemble)
        submission = await _submitted(jobs, "job-a")
        ids = {chunk_task_id("job-a", submission, i) for i in range(3)}
        assert ids <= await tasks_in_broker(jobs.redis)
        assert (await jobs.reconciler.reconcile()).resent == {}  # all where they belong
        worker = RedisJobStore(redis.Redis.from_url(str(settings.redis_url)), 60)
        worker.chunk_done("job-a", submission, 1, [{"row": 1}])
        await jobs.redis.delete(*queue_lists())  # the broker loses every message
        first = await jobs.reconciler.reconcile()
        assert first.checked == 1 and first.resent == {}  # seen missing once: not yet
        second = await jobs.reconciler.reconcile()
        assert second.resent == {"job-a": [0, 2]}  # chunk 1 is done: never run twice
        in_broker = await tasks_in_broker(jobs.redis)
        assert {chunk_task_id("job-a", submission, i) for i in (0, 2)} <= in_broker
        assert await jobs.redis.hget(keys.job("job-a"), "resent") == b"2"
        assert (await jobs.reconciler.reconcile()).resent == {}
        await jobs.stop()

    asyncio.run(scenario())


def test_lost_chunks_without_specs_fail_the_job_with_the_outage(settings: Settings) -> None:
    async def scenario() -> None:
        jobs = RedisJobs(settings, _assemble)
        await _submitted(jobs, "job-b")
        await jobs.redis.delete(*queue_lists(), keys.specs("job-b"))
        worker = RedisJobStore(redis.Redis.from_url(str(settings.redis_url)), 60)
        worker.record_outage(time.time() - 14.2, time.time())
        await jobs.reconciler.reconcile()
        failed = await jobs.reconciler.reconcile()
        assert failed.failed == ["job-b"]
        view = await jobs.view("job-b")
        assert view is not None and view.state is JobState.failed
        assert view.error == {
            "status_code": 503,
            "message": "broker unavailable for 14 s: 3 chunk(s) of this job were lost from "
            "the broker with their task specs and cannot be sent again; submit the job again",
        }
        assert await jobs.redis.zscore(keys.ACTIVE, "job-b") is None
        again = await jobs.submit(_view("job-b"), SPECS, {}, BATCH)  # a resubmission runs
        assert again.state is JobState.queued
        await jobs.stop()

    asyncio.run(scenario())


def test_messages_orphaned_by_a_redis_restart_are_requeued(
    settings: Settings, redis_server: RedisProcess
) -> None:
    async def submitted() -> None:
        jobs = RedisJobs(settings, _assemble)
        await _submitted(jobs, "job-c")
        assert (await jobs.reconciler.reconcile()).restored == 0  # nothing orphaned yet
        await jobs.stop()

    asyncio.run(submitted())
    # A consumer takes a message (delivered, unacknowledged) and dies; Redis restarts.
    consumer = subprocess.Popen(
        [sys.executable, "-c", TAKE_ONE, str(settings.redis_url)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert consumer.stdout is not None and consumer.stdout.readline().strip() == "taken"
    consumer.kill()
    consumer.wait()
    assert redis.Redis.from_url(str(settings.redis_url)).hlen("unacked") == 1
    # Delivered well before the restart: the reconciler takes the restart as up to 2 s
    # earlier than it was (Redis's uptime is whole seconds of a clock in whole seconds, and
    # it subtracts one more), so a message delivered 1.5 s before could count as after it.
    time.sleep(2.5)
    redis_server.stop()
    redis_server.start()

    async def after_restart() -> None:
        fresh = RedisJobs(settings, _assemble)
        report = await fresh.reconciler.reconcile()
        assert report.restored == 1
        client = redis.Redis.from_url(str(settings.redis_url))
        assert client.hlen("unacked") == 0 and client.llen(BATCH) == 3
        assert (await fresh.reconciler.reconcile()).restored == 0  # once per Redis run
        await fresh.stop()

    asyncio.run(after_restart())


def test_a_stale_submission_changes_nothing(settings: Settings) -> None:
    async def scenario() -> tuple[str, str]:
        jobs = RedisJobs(settings, _assemble)
        old = await _submitted(jobs, "job-d")
        await jobs.cancel("job-d")
        new = await _submitted(jobs, "job-d")
        await jobs.stop()
        return old, new

    old, new = asyncio.run(scenario())
    assert old != new
    worker = RedisJobStore(redis.Redis.from_url(str(settings.redis_url)), 60)
    assert worker.claim("job-d", old, 0) is None  # a leftover of the cancelled submission
    assert worker.chunk_done("job-d", old, 0, [{"row": "stale"}]) == -1
    assert not worker.finish("job-d", "failed", {"message": "stale"}, old)
    claimed = worker.claim("job-d", new, 0)
    assert claimed == (1, {"kind": "ping"})
    assert worker.chunk_done("job-d", new, 0, [{"row": 0}]) == 1


def test_a_delivery_cut_short_by_an_outage_is_not_a_crash(settings: Settings) -> None:
    async def scenario() -> str:
        jobs = RedisJobs(settings, _assemble)
        submission = await _submitted(jobs, "job-e")
        await jobs.stop()
        return submission

    submission = asyncio.run(scenario())
    worker = RedisJobStore(redis.Redis.from_url(str(settings.redis_url)), 60)
    assert worker.claim("job-e", submission, 0) == (1, {"kind": "ping"})
    assert worker.claim("job-e", submission, 0) == (2, {"kind": "ping"})  # its worker died
    worker.record_outage(time.time() - 1, time.time())
    assert worker.claim("job-e", submission, 0) == (2, {"kind": "ping"})  # the outage did
    assert worker.claim("job-e", submission, 0) == (3, {"kind": "ping"})


def test_outages_seen_by_several_observers_are_one(settings: Settings) -> None:
    worker = RedisJobStore(redis.Redis.from_url(str(settings.redis_url)), 60)
    worker.record_outage(100.0, 110.0)
    worker.record_outage(102.0, 112.5)  # the same outage, seen by a worker
    worker.record_outage(200.0, 203.0)  # a later one
    assert worker.newest_outage() == (200.0, 203.0)
    raw = redis.Redis.from_url(str(settings.redis_url)).lrange(keys.OUTAGES, 0, -1)
    assert [orjson.loads(r) for r in raw] == [
        {"start": 200.0, "end": 203.0},
        {"start": 100.0, "end": 112.5},
    ]
