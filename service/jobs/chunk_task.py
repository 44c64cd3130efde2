"""The worker side of a chunk: claim it, run it, store its rows, and fail the job only
for a true reason.

A worker that cannot reach Redis waits for it, and past its time budget returns the chunk
to the queue instead of losing it. A hard time limit kills runaway work; ``on_failure``
(called in the worker's parent process for hard timeouts) records the job as failed,
unless the broker was lost meanwhile (then the timeout is not the chunk's doing).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject, TimeLimitExceeded
from celery.signals import worker_process_init

from service.jobs.redis_store import UNREACHABLE, BrokerUnreachable, RedisJobStore, redis_retry
from service.jobs.worker_consumer import BrokerLossWatch
from service.settings import get_settings

log = logging.getLogger(__name__)

MAX_DELIVERIES = 3


class ChunkTask(Task):  # type: ignore[misc]
    """Records failures that happen outside the task body (hard time limit)."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id, submission, index = kwargs.get("job_id"), kwargs.get("submission"), None
        if job_id is None or submission is None:
            return
        limit = get_settings().job_time_limit
        try:
            if isinstance(exc, TimeLimitExceeded):
                if _broker_lost_since(time.time() - limit - _patience(limit)):
                    # The message is acknowledged: the reconciler sends the chunk again,
                    # and a real runaway meets its limit again with the broker up.
                    log.warning("%s timed out during a broker outage; it runs again", task_id)
                    return
                index = kwargs.get("index")  # a chunk already done did not time out
                error = {
                    "status_code": 504,
                    "message": (
                        f"exceeded the hard time limit of {limit:g} s; the worker was stopped"
                    ),
                }
            else:
                error = {"status_code": 500, "message": f"{type(exc).__name__}: {exc}"}
            _store().finish(job_id, "failed", error, submission, index)
        except UNREACHABLE as failure:  # the message is acked: the reconciler re-sends it
            log.error("could not record the failure of %s (%s)", task_id, failure)


def _broker_lost_since(moment: float) -> bool:
    """Did this worker or anyone recording outages see the broker down after ``moment``?"""
    loss = BrokerLossWatch.last_loss
    if loss is not None and loss[1] >= moment:
        return True
    outage = _store().newest_outage()
    return outage is not None and outage[1] >= moment


def run_chunk(task: Task, job_id: str, submission: str, index: int) -> None:
    """Run one chunk of a job and record its rows (or the job's failure) in Redis."""
    from service.worker import run_task

    store = _store()
    deadline = time.monotonic() + _patience(get_settings().job_time_limit)
    try:
        claimed = store.patiently(lambda: store.claim(job_id, submission, index), deadline)
        if claimed is None:
            return  # the job is over, this message is stale, or the chunk is done
        deliveries, spec = claimed
        if deliveries > MAX_DELIVERIES:
            error = {
                "status_code": 500,
                "message": (
                    f"chunk {index} was started {deliveries - 1} times and its worker "
                    "process died each time (crash, kill or out of memory); gave up"
                ),
            }
            store.patiently(lambda: store.finish(job_id, "failed", error, submission), deadline)
            return
        outcome = run_task(spec)
        if "error" in outcome:
            failure = outcome["error"]
            store.patiently(lambda: store.finish(job_id, "failed", failure, submission), deadline)
            return
        rows = outcome.get("results") or [outcome.get("description", {})]
        store.patiently(lambda: store.chunk_done(job_id, submission, index, rows), deadline)
    except BrokerUnreachable as exc:
        log.warning("chunk %s of %s goes back to the queue: %s", index, job_id, exc)
        raise Reject(str(exc), requeue=True) from exc


def _patience(time_limit: float) -> float:
    """How long a chunk may wait for Redis: up to shortly before its hard time limit."""
    return max(time_limit - min(max(0.1 * time_limit, 0.5), 5.0), 0.1)


_job_store: RedisJobStore | None = None


def _store() -> RedisJobStore:
    global _job_store
    if _job_store is None:
        settings = get_settings()
        client = redis.Redis.from_url(
            str(settings.redis_url), health_check_interval=30, **redis_retry()
        )
        _job_store = RedisJobStore(client, settings.job_ttl_seconds)
    return _job_store


@worker_process_init.connect
def _child_ready(**_: Any) -> None:
    """Each prefork child: its own Redis connection, one BLAS thread. Models were loaded
    in the parent before the fork (``xai-service worker``), so the child starts warm."""
    global _job_store
    _job_store = None  # never share a connection across fork
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    log.info("worker process %d ready", os.getpid())
