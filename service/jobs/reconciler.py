"""The reconciler: no accepted job waits for a chunk the broker no longer holds.

Every ``interval`` one gateway (whichever holds a short Redis lease) compares each active
job's record with what the broker holds (queued or delivered, see
:mod:`service.jobs.broker_scan`) and what is done. A chunk that is in none of them on two
looks in a row (a broker outage lost it, a worker died between taking it and recording
the delivery, a gateway died before sending it) is sent again from its stored spec; one
whose spec is gone too fails the job with the true reason. Rows are stored once per
chunk, so a re-send never duplicates a row. Each gateway also records the Redis outages
it lives through, so reasons can say how long the broker was unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.jobs import redis_keys as keys
from service.jobs import redis_scripts as scripts
from service.jobs.broker import CeleryBroker, tasks_in_broker
from service.jobs.celery_app import chunk_task_id

log = logging.getLogger(__name__)

MAX_RESENDS_PER_CHUNK = 3
# Take or renew the reconciler lease; 1 when this gateway holds it.
LEAD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
FIELDS = ("status", "submission", "chunks", "queue", "created_at", "resent")


@dataclass
class Reconciled:
    """What one pass did: orphaned messages restored, jobs looked at, chunks sent again,
    jobs failed."""

    checked: int = 0
    restored: int = 0
    resent: dict[str, list[int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self, client: aioredis.Redis, broker: CeleryBroker, interval: float, job_ttl: float
    ) -> None:
        self.client, self.broker, self.interval = client, broker, interval
        self.job_ttl = int(job_ttl)
        self.owner = uuid.uuid4().hex
        self.resent_total = 0
        self._lead = client.register_script(LEAD)
        self._scripts = {name: client.register_script(s) for name, s in scripts.SCRIPTS.items()}
        self._suspects: dict[tuple[str, str], set[int]] = {}
        self._down_since: float | None = None
        self._redis_run: str | None = None  # the Redis server run whose orphans are back

    async def run(self) -> None:
        """Reconcile every ``interval`` until cancelled; note outages on the way."""
        while True:
            try:
                await self.client.ping()
                await self._back_up()
                if await self._lead(keys=[keys.RECONCILER_LOCK], args=[self.owner, self._lease]):
                    await self.reconcile()
                else:
                    self._suspects.clear()
            except (RedisError, OSError) as exc:
                if self._down_since is None:
                    self._down_since = time.time()
                    log.warning("reconciler: Redis unavailable (%s)", type(exc).__name__)
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad pass
                log.exception("reconciler pass failed")
            await asyncio.sleep(self.interval)

    async def reconcile(self) -> Reconciled:
        """One pass: orphans of a Redis restart back on their queues, then every active
        job older than one interval compared with the broker."""
        report = Reconciled()
        report.restored = await self._restore_orphans()
        cutoff = time.time() - self.interval
        ids = [i.decode() for i in await self.client.zrangebyscore(keys.ACTIVE, "-inf", cutoff)]
        jobs = await self._active(ids)
        report.checked = len(jobs)
        if not jobs:
            self._suspects.clear()
            return report
        in_broker = await tasks_in_broker(self.client)
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in jobs:
                pipe.hkeys(keys.chunks(job_id))
            done_lists = await pipe.execute()
        suspects: dict[tuple[str, str], set[int]] = {}
        for (job_id, record), done_keys in zip(jobs.items(), done_lists, strict=True):
            submission = record["submission"]
            done = {int(k) for k in done_keys}
            missing = {
                i
                for i in range(int(record["chunks"]))
                if i not in done and chunk_task_id(job_id, submission, i) not in in_broker
            }
            lost = missing & self._suspects.get((job_id, submission), set())
            if lost:  # raises before anything is forgotten when the broker is down
                await self._recover(job_id, record, sorted(lost), report)
            if missing - lost:
                suspects[(job_id, submission)] = missing - lost
        self._suspects = suspects
        return report

    async def _restore_orphans(self) -> int:
        """Once per Redis server run: messages delivered before it started belong to
        connections that are gone (their workers lost them when Redis restarted)."""
        server = await self.client.info("server")
        run = str(server["run_id"])
        if run == self._redis_run:
            return 0
        started = time.time() - float(server["uptime_in_seconds"]) - 1  # whole seconds
        restored = await asyncio.to_thread(self.broker.restore_orphans, started)
        if restored:
            log.warning("reconciler: %d message(s) orphaned by a Redis restart requeued", restored)
        self._redis_run = run
        return restored

    async def _active(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """The records of the jobs still queued or running; forget the others."""
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), FIELDS)
            rows = await pipe.execute()
        active: dict[str, dict[str, str]] = {}
        gone: list[str] = []
        for job_id, values in zip(ids, rows, strict=True):
            record = {k: v.decode() for k, v in zip(FIELDS, values, strict=True) if v is not None}
            if record.get("status") in ("queued", "running") and "submission" in record:
                active[job_id] = record
            else:
                gone.append(job_id)
        if gone:
            await self.client.zrem(keys.ACTIVE, *gone)
        return active

    async def _recover(
        self, job_id: str, record: dict[str, str], lost: list[int], report: Reconciled
    ) -> None:
        """Send the lost chunks again, or fail the job when that cannot work."""
        submission, chunks = record["submission"], int(record["chunks"])
        async with self.client.pipeline(transaction=False) as pipe:
            for index in lost:
                pipe.hexists(keys.specs(job_id), str(index))
            have_spec = await pipe.execute()
        resent = int(record.get("resent", 0))
        since = float(record.get("created_at", 0))
        if not all(have_spec):
            await self._fail(
                job_id,
                submission,
                f"{await self._cause(since)}: {len(lost)} chunk(s) of this job were lost "
                "from the broker with their task specs and cannot be sent again; "
                "submit the job again",
                report,
            )
            return
        if resent + len(lost) > MAX_RESENDS_PER_CHUNK * chunks:
            await self._fail(
                job_id,
                submission,
                f"{await self._cause(since)}: the broker lost chunks of this job "
                f"{resent + len(lost)} times; gave up",
                report,
            )
            return
        log.warning("job %s: chunk(s) %s lost by the broker; sending them again", job_id, lost)
        await asyncio.to_thread(self.broker.send, job_id, submission, lost, record.get("queue", ""))
        await self.client.hincrby(keys.job(job_id), "resent", len(lost))
        self.resent_total += len(lost)
        report.resent[job_id] = lost

    async def _fail(self, job_id: str, submission: str, message: str, report: Reconciled) -> None:
        log.error("job %s failed: %s", job_id, message)
        call = scripts.finish(
            job_id,
            "failed",
            {"status_code": 503, "message": message},
            time.time(),
            self.job_ttl,
            submission,
        )
        if await self._scripts[call.script](keys=call.keys, args=call.args):
            report.failed.append(job_id)

    async def _cause(self, since: float) -> str:
        """The newest broker outage since ``since``, as a reason."""
        newest = await self.client.lindex(keys.OUTAGES, 0)
        if newest is not None:
            outage: dict[str, Any] = orjson.loads(newest)
            if outage["end"] >= since:
                return f"broker unavailable for {max(1, round(outage['end'] - outage['start']))} s"
        return "the broker lost data"

    async def _back_up(self) -> None:
        if self._down_since is None:
            return
        start, end = self._down_since, time.time()
        call = scripts.record_outage(start, end)
        await self._scripts[call.script](keys=call.keys, args=call.args)
        self._down_since = None
        log.warning("reconciler: Redis is back after %.1f s", end - start)

    @property
    def _lease(self) -> int:
        return int(self.interval * 3000)
