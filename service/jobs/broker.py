"""The Celery broker as the reconciler sees it: which chunk tasks it holds (queued, or
delivered and not yet acknowledged, read from kombu's Redis transport layout), and how
chunks are put into it (sent, or restored after a Redis restart orphaned them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS, Channel

from service.jobs.celery_app import BATCH, INTERACTIVE, TASK_NAME, chunk_task_id

PAGE = 500


def queue_lists(queues: Iterable[str] = (INTERACTIVE, BATCH)) -> list[str]:
    """The Redis lists of each queue: one per priority step (``queue_order_strategy``)."""
    return [
        queue if step == 0 else f"{queue}{Channel.sep}{step}"
        for queue in queues
        for step in PRIORITY_STEPS
    ]


async def tasks_in_broker(client: aioredis.Redis) -> set[str]:
    """Ids of chunk tasks queued or delivered-but-unacknowledged (a worker holds them, or
    they come back after the visibility timeout). Queues are read before the unacked
    hash: a message moving from one to the other meanwhile is still seen."""
    found: set[str] = set()
    for key in queue_lists():
        start = 0
        while True:
            page = await client.lrange(key, start, start + PAGE - 1)
            found.update(_chunk_id(_loads(raw)) for raw in page)
            if len(page) < PAGE:
                break
            start += PAGE
    cursor = 0
    while True:
        cursor, entries = await client.hscan(Channel.unacked_key, cursor, count=PAGE)
        for raw in entries.values():
            entry = _loads(raw)  # [message, exchange, routing key]
            found.add(_chunk_id(entry[0] if isinstance(entry, list) and entry else None))
        if cursor == 0:
            break
    found.discard("")
    return found


class CeleryBroker:
    """Puts chunk messages on the broker (blocking calls: run them in a thread)."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, job_id: str, submission: str, indices: list[int], queue: str) -> None:
        """One message per chunk: ids only; the worker reads the spec from Redis."""
        for index in indices:
            kwargs = {"job_id": job_id, "submission": submission, "index": index}
            self.celery.send_task(
                TASK_NAME,
                kwargs=kwargs,
                queue=queue or BATCH,
                task_id=chunk_task_id(job_id, submission, index),
                # what monitoring shows; given, Celery skips its safe repr (~0.2 ms a message)
                argsrepr="()",
                kwargsrepr=repr(kwargs),
            )

    def restore_orphans(self, delivered_before: float) -> int:
        """Put back on their queues the unacknowledged messages delivered before
        ``delivered_before``: after a Redis restart no consumer holds them any more (every
        connection was closed), yet they would wait out the visibility timeout. The same
        atomic restore as kombu's own sweep; returns how many were restored."""
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            tags = channel.client.zrangebyscore(
                channel.unacked_index_key, "-inf", f"({delivered_before}"
            )
            for tag in tags:
                channel.qos.restore_by_tag(tag)
        return len(tags)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _chunk_id(message: Any) -> str:
    """The task id of a chunk message, or "" for anything else."""
    if not isinstance(message, dict):
        return ""
    headers = message.get("headers") or {}
    return str(headers.get("id", "")) if headers.get("task") == TASK_NAME else ""
