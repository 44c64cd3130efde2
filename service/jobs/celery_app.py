"""The distributed engine: Celery on its Redis transport.

Workers consume two queues, ``interactive`` before ``batch``. Tasks are acknowledged
late and requeued when their worker process is lost; a hard time limit kills runaway
work and the task's ``on_failure`` (called in the parent for hard timeouts) records the
job as failed with its reason.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import worker_process_init
from kombu import Exchange, Queue

from service.jobs.redis_store import RedisJobStore, redis_retry
from service.jobs.spec import TaskSpec
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

INTERACTIVE, BATCH = "interactive", "batch"
MAX_DELIVERIES = 3


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError("XAI_REDIS_URL is not set")
    app = Celery("xai", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_time_limit=settings.job_time_limit,
        worker_prefetch_multiplier=1,
        worker_proc_alive_timeout=60,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_queues=[
            Queue(q, Exchange(q, type="direct"), routing_key=q) for q in (INTERACTIVE, BATCH)
        ],
        task_default_queue=INTERACTIVE,
        broker_transport_options={
            # A message whose worker died reappears after this; keep it above the limit.
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
        },
        task_serializer="json",
        accept_content=["json"],
    )
    app.task(bind=True, base=ChunkTask, name="xai.run_chunk")(run_chunk)
    return app


class ChunkTask(Task):  # type: ignore[misc]
    """Records failures that happen outside the task body (hard time limit)."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id is None:
            return
        if isinstance(exc, TimeLimitExceeded):
            error = {
                "status_code": 504,
                "message": (
                    f"exceeded the hard time limit of {get_settings().job_time_limit:g} s; "
                    "the worker was stopped"
                ),
            }
        else:
            error = {"status_code": 500, "message": f"{type(exc).__name__}: {exc}"}
        _store().finish(job_id, "failed", error)


def run_chunk(task: Task, job_id: str, index: int, spec: TaskSpec) -> None:
    """Run one chunk of a job and record its rows (or the job's failure) in Redis."""
    from service.worker import run_task

    store = _store()
    active, deliveries = store.start_chunk(job_id, index)
    if not active:
        return
    if deliveries > MAX_DELIVERIES:
        store.finish(
            job_id,
            "failed",
            {
                "status_code": 500,
                "message": (
                    f"chunk {index} lost its worker {deliveries - 1} times (crash or kill); gave up"
                ),
            },
        )
        return
    outcome = run_task(spec)
    if "error" in outcome:
        store.finish(job_id, "failed", outcome["error"])
        return
    rows = outcome.get("results") or [outcome.get("description", {})]
    store.chunk_done(job_id, index, rows)


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
