"""How a Celery worker holds its broker connection: it reconnects promptly, and it
remembers when it last lost the connection (see :class:`BrokerLossWatch`)."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

# A worker that lost the broker tries again every RECONNECT_SECONDS at most, forever
# (kombu's backoff, 2, 4, 6 ... 30 s, left workers idle up to 12 s after an outage).
RECONNECT_SECONDS = 2.0


class PromptConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, reconnecting to the broker every 0.5 s to RECONNECT_SECONDS."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=0.5,
            interval_step=0.5,
            interval_max=RECONNECT_SECONDS,
        )
        return super().ensure_connected(conn)


class BrokerLossWatch(bootsteps.StartStopStep):  # type: ignore[misc]
    """Remembers when this worker last lost its broker connection and got it back.

    While the worker reconnects, its main loop is blocked: a chunk that ended meanwhile
    is seen to pass its hard time limit when the loop resumes. Such a timeout is not
    the chunk's fault (see
    :meth:`service.jobs.chunk_task.ChunkTask.on_failure`)."""

    requires = ("celery.worker.consumer.connection:Connection",)
    last_loss: tuple[float, float] | None = None  # (lost, back), this process

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._lost_at: float | None = None
        super().__init__(parent, **kwargs)

    def stop(self, parent: Any) -> None:  # the consumer restarts after a connection error
        if self._lost_at is None:
            self._lost_at = time.time()

    def shutdown(self, parent: Any) -> None:
        self._lost_at = None

    def start(self, parent: Any) -> None:  # connected (again)
        if self._lost_at is not None:
            BrokerLossWatch.last_loss = (self._lost_at, time.time())
            log.warning("broker connection back after %.1f s", time.time() - self._lost_at)
            self._lost_at = None
