"""The atomic state changes of a distributed job (Lua), shared by gateways and workers.

A job record belongs to one *submission*: a random id set each time the job is created
(again, after it failed or was cancelled). Every chunk message names its submission, so
a stale delivery of an older submission changes nothing. Each builder returns the keys
and arguments of one script call, so every caller passes them in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from service.jobs import redis_keys as keys

OUTAGES_KEPT = 50

# Create (or create again) a job with its chunk specs. Returns 0 when the same job is
# active, or succeeded with its result still there (cached or in chunks); 1 when this call
# created it.
CREATE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then return 0 end
if status == 'succeeded' and redis.call('EXISTS', KEYS[7], KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local fields = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * fields))
local first = 5 + 2 * fields
for i = first, #ARGV do redis.call('HSET', KEYS[4], i - first, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'created', 1)
return 1
"""

# Record a job answered from the result cache as succeeded (unless one is active); a hit
# keeps the cached result alive as long as the record. Returns 0 when a job of that id is
# active, 1 when it had succeeded already, 2 when this call recorded it.
RECORD_CACHED = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then return 0 end
local recorded = 1
if status ~= 'succeeded' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  recorded = 2
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[1])
return recorded
"""

# A worker takes a chunk: {0} when it must not run (job over, stale submission, chunk
# already done), else {deliveries, spec}. A delivery counts towards the poison guard
# unless a broker outage ended after the previous one began (the outage, not a crash,
# may have cut it short).
CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return {0} end
if redis.call('HGET', KEYS[1], 'submission') ~= ARGV[1] then return {0} end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return {0} end
local spec = redis.call('HGET', KEYS[4], ARGV[2])
if not spec then return {0} end
local at = redis.call('HGET', KEYS[3], ARGV[2] .. ':at')
local counted = true
if at then
  local newest = redis.call('LINDEX', KEYS[6], 0)
  if newest and cjson.decode(newest)['end'] >= tonumber(at) then counted = false end
end
local n
if counted then
  n = redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
else
  n = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '1')
end
redis.call('HSET', KEYS[3], ARGV[2] .. ':at', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'started', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' running')
end
return {n, spec}
"""

# Store a chunk's rows once; the last one makes the job succeed. Returns chunks done,
# or -1 when the job is no longer active or belongs to another submission.
CHUNK_DONE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return -1 end
if redis.call('HGET', KEYS[1], 'submission') ~= ARGV[8] then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return tonumber(redis.call('HGET', KEYS[1], 'chunks_done'))
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
if done >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'finished_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])  -- the rows go with the record, read or not
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], ARGV[6])
  if status == 'queued' then redis.call('HINCRBY', KEYS[3], 'started', 1) end
  redis.call('HINCRBY', KEYS[3], 'succeeded', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' succeeded')
elseif status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'started', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' running')
end
return done
"""

# Finish an active job as failed/cancelled. With a submission, only that submission;
# with a chunk index, only while that chunk is not done (a late timeout changes nothing).
# Returns 1 when this call finished the job.
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
if ARGV[7] ~= '' and redis.call('HGET', KEYS[1], 'submission') ~= ARGV[7] then return 0 end
if ARGV[8] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[8]) == 1 then return 0 end
if status == 'running' then redis.call('HINCRBY', KEYS[3], 'finished_running', 1) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2], 'finished_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. ARGV[1])
return 1
"""

# Record a Redis outage; one that overlaps the newest record is merged into it (every
# gateway and worker that saw the same outage reports it).
RECORD_OUTAGE = """
local s, e = tonumber(ARGV[1]), tonumber(ARGV[2])
local newest = redis.call('LINDEX', KEYS[1], 0)
if newest then
  local o = cjson.decode(newest)
  if s <= o['end'] + 1 and e >= o['start'] - 1 then
    s, e = math.min(s, o['start']), math.max(e, o['end'])
    redis.call('LPOP', KEYS[1])
  end
end
redis.call('LPUSH', KEYS[1], cjson.encode({start = s, ['end'] = e}))
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
return 1
"""

# What a gateway needs to answer for a job: {status} unless it succeeded, else
# {status, cached body} or {status, false, header, kind, cache key, chunks as a flat hash}.
COLLECT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'succeeded' then return {status or false} end
local fields = redis.call('HMGET', KEYS[1], 'cache_key', 'header', 'kind')
local cache_key = fields[1]
if not cache_key or cache_key == '' then cache_key = ARGV[2] end
local body = redis.call('GET', ARGV[1] .. cache_key)
if body then return {status, body} end
return {status, false, fields[2] or false, fields[3] or false, cache_key,
        redis.call('HGETALL', KEYS[2])}
"""

SCRIPTS = {
    "create": CREATE,
    "record_cached": RECORD_CACHED,
    "claim": CLAIM,
    "chunk_done": CHUNK_DONE,
    "finish": FINISH,
    "record_outage": RECORD_OUTAGE,
    "collect": COLLECT,
}


@dataclass(frozen=True)
class Call:
    """One script call: the script's name (in ``SCRIPTS``), its keys and arguments."""

    script: str
    keys: list[str]
    args: list[Any]


def _state_keys(job_id: str) -> list[str]:
    return [
        keys.job(job_id),
        keys.chunks(job_id),
        keys.STATS,
        keys.deliveries(job_id),
        keys.specs(job_id),
        keys.ACTIVE,
    ]


def create(
    job_id: str,
    fields: dict[str, Any],
    specs: list[bytes],
    active_ttl: int,
    now: float,
    result_key: str,
) -> Call:
    flat = [x for pair in fields.items() for x in pair]
    return Call(
        "create",
        [
            keys.job(job_id),
            keys.chunks(job_id),
            keys.deliveries(job_id),
            keys.specs(job_id),
            keys.STATS,
            keys.ACTIVE,
            keys.result(result_key),
        ],
        [job_id, active_ttl, now, len(fields), *flat, *specs],
    )


def record_cached(job_id: str, fields: dict[str, Any], ttl: int, result_key: str) -> Call:
    flat = [x for pair in fields.items() for x in pair]
    return Call(
        "record_cached",
        [
            keys.job(job_id),
            keys.chunks(job_id),
            keys.deliveries(job_id),
            keys.specs(job_id),
            keys.result(result_key),
        ],
        [ttl, *flat],
    )


def claim(job_id: str, submission: str, index: int, now: float, active_ttl: int) -> Call:
    return Call(
        "claim",
        [
            keys.job(job_id),
            keys.chunks(job_id),
            keys.deliveries(job_id),
            keys.specs(job_id),
            keys.STATS,
            keys.OUTAGES,
        ],
        [submission, index, now, active_ttl, keys.EVENTS_CHANNEL, job_id],
    )


def chunk_done(
    job_id: str,
    submission: str,
    index: int,
    rows: list[dict[str, Any]],
    now: float,
    active_ttl: int,
    job_ttl: int,
) -> Call:
    return Call(
        "chunk_done",
        _state_keys(job_id),
        [
            index,
            orjson.dumps(rows),
            now,
            active_ttl,
            keys.EVENTS_CHANNEL,
            job_id,
            job_ttl,
            submission,
        ],
    )


def finish(
    job_id: str,
    status: str,
    error: dict[str, Any],
    now: float,
    job_ttl: int,
    submission: str = "",
    index: int | None = None,
) -> Call:
    return Call(
        "finish",
        _state_keys(job_id),
        [
            status,
            orjson.dumps(error),
            now,
            job_ttl,
            keys.EVENTS_CHANNEL,
            job_id,
            submission,
            "" if index is None else index,
        ],
    )


def collect(job_id: str) -> Call:
    return Call("collect", [keys.job(job_id), keys.chunks(job_id)], [keys.result(""), job_id])


def record_outage(start: float, end: float) -> Call:
    return Call("record_outage", [keys.OUTAGES], [start, end, OUTAGES_KEPT])
