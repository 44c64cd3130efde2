"""The distributed engine: Celery on its Redis transport.

Workers consume two queues, ``interactive`` before ``batch``. A message names a chunk
(job id, submission, index); its spec is in Redis (:mod:`service.jobs.chunk_task` runs
it). Tasks are acknowledged late and requeued when their worker process is lost; a dead
worker's message comes back after the visibility timeout, swept for every second.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from service.jobs.chunk_task import ChunkTask, run_chunk
from service.jobs.worker_consumer import BrokerLossWatch
from service.settings import Settings

INTERACTIVE, BATCH = "interactive", "batch"
TASK_NAME = "xai.run_chunk"
# The transport sweeps for unacknowledged messages past the visibility timeout every
# RESTORE_INTERVAL seconds (kombu's defaults, 10 s x a throttle of 10, made a dead
# worker's chunk come back up to 100 s late).
RESTORE_INTERVAL = 1
RESTORE_MUTEX_SECONDS = 10  # a sweeper that dies holding the sweep lock blocks no longer


def chunk_task_id(job_id: str, submission: str, index: int) -> str:
    """The Celery task id of one chunk of one submission of a job."""
    return f"{job_id}:{submission}:{index}"


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
        broker_connection_max_retries=None,
        worker_consumer="service.jobs.worker_consumer:PromptConsumer",
        task_queues=[
            Queue(q, Exchange(q, type="direct"), routing_key=q) for q in (INTERACTIVE, BATCH)
        ],
        task_default_queue=INTERACTIVE,
        broker_transport_options={
            # A message whose worker died reappears after this; keep it above the limit.
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": RESTORE_INTERVAL,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": RESTORE_MUTEX_SECONDS,
            "queue_order_strategy": "priority",
        },
        task_serializer="json",
        accept_content=["json"],
    )
    app.task(bind=True, base=ChunkTask, name=TASK_NAME)(run_chunk)
    app.steps["consumer"].add(BrokerLossWatch)
    return app
