"""Job records in Redis, shared by gateways and workers. State changes are atomic (Lua)
and announced on one pub/sub channel."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.jobs import redis_keys as keys


def redis_retry() -> dict[str, object]:
    """Client options: replace a stale pooled connection (after a Redis restart) quietly,
    but fail fast while Redis is really down."""
    return {
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.05), 4),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


# Store a chunk's rows; when it is the last one, the job succeeds. Returns chunks done,
# or -1 when the job is no longer active (cancelled, failed, expired).
CHUNK_DONE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return tonumber(redis.call('HGET', KEYS[1], 'chunks_done'))
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
if done >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])  -- the rows go with the record, read or not
  if status == 'queued' then redis.call('HINCRBY', KEYS[3], 'started', 1) end
  redis.call('HINCRBY', KEYS[3], 'succeeded', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6])
elseif status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'started', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return done
"""

# Finish an active job as failed/cancelled. Returns 1 when this call finished it.
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
if status == 'running' then redis.call('HINCRBY', KEYS[3], 'finished_running', 1) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2], 'finished_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

# Mark running when a chunk starts (first start only announces).
START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'started', 1)
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
if status == 'running' then return 1 end
return 0
"""


class RedisJobStore:
    """Synchronous access (workers); the gateway calls the same scripts through asyncio."""

    def __init__(self, client: redis.Redis, job_ttl: float, active_ttl: float = 86_400) -> None:
        self.client = client
        self.job_ttl = int(job_ttl)
        self.active_ttl = int(active_ttl)
        self._start = client.register_script(START)
        self._chunk_done = client.register_script(CHUNK_DONE)
        self._finish = client.register_script(FINISH)

    def status(self, job_id: str) -> str | None:
        value = self.client.hget(keys.job(job_id), "status")
        return value.decode() if value else None

    def start_chunk(self, job_id: str, index: int) -> tuple[bool, int]:
        """(job still active, deliveries of this chunk so far including this one)."""
        active = bool(
            self._start(
                keys=[keys.job(job_id), keys.STATS], args=[time.time(), *self._event(job_id)]
            )
        )
        attempts = int(self.client.hincrby(keys.attempts(job_id), str(index), 1))
        self.client.expire(keys.attempts(job_id), self.active_ttl)
        return active, attempts

    def chunk_done(self, job_id: str, index: int, rows: list[dict[str, Any]]) -> int:
        return int(
            self._chunk_done(
                keys=[keys.job(job_id), keys.chunks(job_id), keys.STATS],
                args=[
                    index,
                    orjson.dumps(rows),
                    time.time(),
                    self.active_ttl,
                    *self._event(job_id),
                    self.job_ttl,
                ],
            )
        )

    def finish(self, job_id: str, status: str, error: dict[str, Any]) -> bool:
        return bool(
            self._finish(
                keys=[keys.job(job_id), keys.chunks(job_id), keys.STATS],
                args=[status, orjson.dumps(error), time.time(), self.job_ttl, *self._event(job_id)],
            )
        )

    @staticmethod
    def _event(job_id: str) -> tuple[str, str]:
        return keys.EVENTS_CHANNEL, job_id
