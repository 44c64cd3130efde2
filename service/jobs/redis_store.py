"""Job records in Redis as workers see them (synchronous). Every state change is one
atomic script (:mod:`service.jobs.redis_scripts`) announced on one pub/sub channel."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.jobs import redis_keys as keys
from service.jobs import redis_scripts as scripts
from service.jobs.spec import TaskSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def redis_retry() -> dict[str, object]:
    """Client options: replace a stale pooled connection (after a Redis restart) quietly,
    but fail fast while Redis is really down."""
    return {
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.05), 4),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


class BrokerUnreachable(Exception):
    """Redis stayed unreachable until the caller's deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Redis unreachable for {seconds:.0f} s")
        self.seconds = seconds


class RedisJobStore:
    """What a worker does to a job: claim a chunk, store its rows, or finish the job."""

    def __init__(self, client: redis.Redis, job_ttl: float, active_ttl: float = 86_400) -> None:
        self.client = client
        self.job_ttl = int(job_ttl)
        self.active_ttl = int(active_ttl)
        self._scripts = {name: client.register_script(s) for name, s in scripts.SCRIPTS.items()}

    def claim(self, job_id: str, submission: str, index: int) -> tuple[int, TaskSpec] | None:
        """(deliveries so far, the chunk's spec), or None when it must not run: the job
        is over, the message belongs to an older submission, or the chunk is done."""
        reply = self._run(scripts.claim(job_id, submission, index, time.time(), self.active_ttl))
        if not reply or not reply[0]:
            return None
        return int(reply[0]), orjson.loads(reply[1])

    def chunk_done(
        self, job_id: str, submission: str, index: int, rows: list[dict[str, Any]]
    ) -> int:
        call = scripts.chunk_done(
            job_id, submission, index, rows, time.time(), self.active_ttl, self.job_ttl
        )
        return int(self._run(call))

    def finish(
        self,
        job_id: str,
        status: str,
        error: dict[str, Any],
        submission: str = "",
        index: int | None = None,
    ) -> bool:
        call = scripts.finish(job_id, status, error, time.time(), self.job_ttl, submission, index)
        return bool(self._run(call))

    def record_outage(self, start: float, end: float) -> None:
        self._run(scripts.record_outage(start, end))

    def newest_outage(self) -> tuple[float, float] | None:
        """(start, end) of the newest recorded Redis outage."""
        raw = self.client.lindex(keys.OUTAGES, 0)
        if raw is None:
            return None
        outage = orjson.loads(raw)
        return float(outage["start"]), float(outage["end"])

    def patiently(self, action: Callable[[], T], deadline: float) -> T:
        """Run ``action``; while Redis is unreachable, retry until ``deadline`` (monotonic),
        then raise :class:`BrokerUnreachable`. An outage lived through is recorded."""
        down_since: float | None = None
        pause = 0.1
        while True:
            try:
                value = action()
            except UNREACHABLE as exc:
                if down_since is None:
                    down_since = time.time()
                    log.warning("Redis unreachable (%s); waiting for it", type(exc).__name__)
                if time.monotonic() + pause > deadline:
                    raise BrokerUnreachable(time.time() - down_since) from exc
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if down_since is not None:
                self._note_outage(down_since, time.time())
            return value

    def _note_outage(self, start: float, end: float) -> None:
        log.warning("Redis was unreachable for %.1f s", end - start)
        try:
            self.record_outage(start, end)
        except UNREACHABLE:  # down again: the next observer records it
            pass

    def _run(self, call: scripts.Call) -> Any:
        return self._scripts[call.script](keys=call.keys, args=call.args)
