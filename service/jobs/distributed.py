"""Distributed job backend: Celery workers on Redis; Redis holds jobs and results.

The gateway awaits jobs through one pub/sub subscription shared by all requests (no
thread or connection parked per request); any gateway can assemble a finished job's
response from its chunks, so a job survives the gateway that accepted it. A job's chunk
specs are stored with its record, and the reconciler (:mod:`service.jobs.reconciler`)
sends again any chunk the broker lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.errors import ServiceError, UnavailableError, error_from_payload
from service.jobs import redis_keys as keys
from service.jobs import redis_scripts as scripts
from service.jobs.backend import Assembler, JobView, Splicer
from service.jobs.broker import CeleryBroker
from service.jobs.celery_app import BATCH, INTERACTIVE, chunk_task_id, make_celery
from service.jobs.reconciler import Reconciler
from service.jobs.spec import TaskSpec
from service.jobs.store import JobState
from service.settings import Settings

log = logging.getLogger(__name__)

UNAVAILABLE = "Redis is unavailable; retry shortly"
ACTIVE_TTL = 86_400  # a queued/running job's record outlives any outage or backlog
ACTIVE_STATES = frozenset({JobState.queued.value, JobState.running.value})
INLINE_ASSEMBLY_BYTES = 64 << 10  # rows larger than this are assembled off the event loop


class RedisJobs:
    def __init__(
        self, settings: Settings, assembler: Assembler, splicer: Splicer | None = None
    ) -> None:
        self.settings, self.assembler, self.splicer = settings, assembler, splicer
        self.redis = aioredis.Redis.from_url(
            str(settings.redis_url),
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            retry_on_timeout=False,
        )
        self.celery = make_celery(settings)
        self.submitted = 0
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._scripts = {n: self.redis.register_script(s) for n, s in scripts.SCRIPTS.items()}
        self._stats: dict[str, float] = {}
        self.broker = CeleryBroker(self.celery)
        self.reconciler = Reconciler(
            self.redis, self.broker, settings.reconcile_seconds, settings.job_ttl_seconds
        )
        self._reconciling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())
        self._reconciling = asyncio.create_task(self.reconciler.run())

    async def stop(self) -> None:
        for task in (self._listener, self._reconciling):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.redis.aclose()

    async def problem(self) -> str | None:
        try:
            await asyncio.wait_for(self.redis.ping(), 2)
        except (RedisError, OSError, TimeoutError) as exc:
            return f"{UNAVAILABLE} ({type(exc).__name__})"
        return None

    async def lookup(self, cache_key: str, job_id: str) -> tuple[bytes | None, JobView | None]:
        """The cache entry of ``cache_key`` and the record of ``job_id``, in one round trip."""

        async def both() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(keys.result(cache_key))
            pipe.hgetall(keys.job(job_id))
            return await pipe.execute()  # type: ignore[no-any-return]

        body, raw = await self._guard(both)
        return body, (_view(job_id, raw) if raw else None)

    async def view(self, job_id: str) -> JobView | None:
        raw = await self._guard(lambda: self.redis.hgetall(keys.job(job_id)))
        return _view(job_id, raw) if raw else None

    async def submit(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> JobView:
        return (await self._create(view, specs, header, queue))[0]

    async def run(
        self,
        view: JobView,
        specs: list[TaskSpec],
        header: dict[str, Any],
        queue: str,
        timeout: float,
    ) -> JobView | None:
        """Submit, then wait up to ``timeout``. Listening starts before the job exists, so
        a job this call created is not read again until its last event."""
        with self._listening(view.job_id) as event:
            current, created = await self._create(view, specs, header, queue)
            return await self._wait(view.job_id, timeout, event, current if created else None)

    async def _create(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> tuple[JobView, bool]:
        """(the job's view, whether this call created it)."""
        submission = uuid.uuid4().hex[:16]
        fields: dict[str, Any] = {
            "kind": view.kind,
            "model": view.model,
            "version": view.version,
            "status": "queued",
            "chunks": len(specs),
            "chunks_done": 0,
            "created_at": time.time(),
            "header": orjson.dumps(header),
            "submission": submission,
            "queue": queue,
            "tenant": view.tenant,
            "cache_key": view.result_key,
        }
        call = scripts.create(
            view.job_id,
            fields,
            [orjson.dumps(s) for s in specs],
            ACTIVE_TTL,
            time.time(),
            view.result_key,
        )
        if await self._guard(lambda: self._run(call)):
            self.submitted += 1
            try:
                await asyncio.to_thread(
                    self.broker.send, view.job_id, submission, list(range(len(specs))), queue
                )
            except Exception as exc:  # noqa: BLE001 - the job is stored: it is not lost
                log.warning(
                    "job %s: sending its chunks failed (%s); the reconciler sends them",
                    view.job_id,
                    exc,
                )
            created_at = float(fields["created_at"])
            return replace(view, state=JobState.queued, progress=0.0, created_at=created_at), True
        current = await self.view(view.job_id)  # the same job, active or done: coalesced
        if current is None:
            raise ServiceError("job record vanished right after submission")
        return current, False

    async def record_cached(self, view: JobView, body: bytes) -> JobView:
        now = time.time()
        fields: dict[str, Any] = {
            "kind": view.kind,
            "model": view.model,
            "version": view.version,
            "status": "succeeded",
            "chunks": 0,
            "chunks_done": 0,
            "created_at": now,
            "started_at": now,
            "finished_at": now,
            "tenant": view.tenant,
            "cache_key": view.result_key,
        }
        call = scripts.record_cached(
            view.job_id, fields, int(self.settings.job_ttl_seconds), view.result_key
        )
        if await self._guard(lambda: self._run(call)) == 2:
            return replace(
                view,
                state=JobState.succeeded,
                progress=1.0,
                created_at=now,
                started_at=now,
                finished_at=now,
            )
        return await self.view(view.job_id) or view  # an active job of that id is left as is

    async def wait(self, job_id: str, timeout: float) -> JobView | None:
        with self._listening(job_id) as event:
            return await self._wait(job_id, timeout, event, None)

    async def _wait(
        self, job_id: str, timeout: float, event: asyncio.Event, known: JobView | None
    ) -> JobView | None:
        """Read the job whenever ``event`` (registered for it) fires, until it is finished
        or ``timeout`` passes; ``known``: its state when the event was registered, so the
        first read waits for the first event."""
        deadline = time.monotonic() + timeout
        current = known
        while True:
            if current is None or event.is_set():
                event.clear()
                current = await self.view(job_id)
            remaining = deadline - time.monotonic()
            if current is None or current.state.finished or remaining <= 0:
                return current
            with contextlib.suppress(TimeoutError):
                # past 5 s without an event the record is read again (a missed event)
                await asyncio.wait_for(event.wait(), min(remaining, 5.0))
            if not event.is_set():
                current = None

    @contextlib.contextmanager
    def _listening(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event the listener sets when ``job_id`` ends, registered while in use."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def result(self, job_id: str) -> bytes | None:
        found = await self._guard(lambda: self._run(scripts.collect(job_id)))
        if found[0] != b"succeeded":
            return None
        if found[1]:
            return found[1]  # type: ignore[no-any-return]
        header, kind, cache_key, flat = found[2:6]
        if not flat or not header:  # answered from a cache entry that has expired since
            return None
        ordered = sorted((int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2))
        parts = [part for _, part in ordered]
        body = self.splicer(kind.decode(), header, parts) if self.splicer else None
        if body is None and sum(map(len, parts)) > INLINE_ASSEMBLY_BYTES:
            body = await asyncio.to_thread(_assemble, self.assembler, kind, header, parts)
        elif body is None:
            body = _assemble(self.assembler, kind, header, parts)
        result_key = keys.result(cache_key.decode())
        ttl = int(self.settings.job_ttl_seconds)

        async def store() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(result_key, body, ex=ttl)
            pipe.expire(keys.chunks(job_id), 60)
            await pipe.execute()

        await self._guard(store)
        return body

    async def cancel(self, job_id: str) -> JobView | None:
        raw = await self._guard(lambda: self.redis.hmget(keys.job(job_id), "submission", "chunks"))
        error = {"status_code": 409, "message": "cancelled by request"}
        call = scripts.finish(
            job_id, "cancelled", error, time.time(), int(self.settings.job_ttl_seconds)
        )
        cancelled = await self._guard(lambda: self._run(call))
        if cancelled and raw[0] is not None:
            ids = [chunk_task_id(job_id, raw[0].decode(), i) for i in range(int(raw[1] or 0))]
            try:  # stops running chunks now; any other delivery is ignored by its worker
                await asyncio.to_thread(
                    self.celery.control.revoke, ids, terminate=True, signal="SIGKILL"
                )
            except Exception as exc:  # noqa: BLE001 - the job is cancelled all the same
                log.warning("job %s: revoking its chunks failed (%s)", job_id, exc)
        return await self.view(job_id)

    async def call(self, spec: TaskSpec) -> dict[str, Any]:
        job_id = f"call-{uuid.uuid4().hex}"
        view = JobView(
            job_id=job_id,
            kind=f"call:{spec['kind']}",
            model=spec.get("model", ""),
            version=spec.get("version", ""),
            state=JobState.queued,
            progress=0.0,
            created_at=time.time(),
        )
        done = await self.run(view, [spec], {}, INTERACTIVE, self.settings.job_time_limit + 5)
        if done is None or not done.state.finished:
            await self.cancel(job_id)
            raise UnavailableError("no worker answered in time; are workers running?")
        if done.state is not JobState.succeeded:
            raise error_from_payload(done.error or {"status_code": 500, "message": "failed"})
        chunks = await self._guard(lambda: self.redis.hgetall(keys.chunks(job_id)))
        rows = orjson.loads(next(iter(chunks.values())))
        await self.redis.delete(keys.job(job_id), keys.chunks(job_id))
        if spec["kind"] in ("describe", "validate"):
            return {"description": rows[0]}
        return {"results": rows}

    def state_counts(self) -> dict[str, float]:
        return dict(self._stats)

    @staticmethod
    def queue_for(chunks: int) -> str:
        return INTERACTIVE if chunks == 1 else BATCH

    async def _run(self, call: scripts.Call) -> Any:
        return await self._scripts[call.script](keys=call.keys, args=call.args)

    async def _guard(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis call; after a connection error drop every pooled connection (they
        are stale after a Redis restart) and try once more, else answer 503."""
        try:
            return await call()
        except (RedisError, OSError):
            await self.redis.connection_pool.disconnect()
        try:
            return await call()
        except (RedisError, OSError) as exc:
            raise UnavailableError(f"{UNAVAILABLE} ({type(exc).__name__})") from exc

    async def _listen(self) -> None:
        """Wake waiters on job events; reconnect forever; refresh the job statistics."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(keys.EVENTS_CHANNEL)
                self._wake_all()  # events may have been missed while disconnected
                last_stats = 0.0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message["type"] == "message":
                        job_id, _, status = message["data"].decode().partition(" ")
                        if status in ACTIVE_STATES:
                            continue  # waiters wait for the end of a job
                        for event in self._waiters.get(job_id, ()):
                            event.set()
                    if time.monotonic() - last_stats > 2:
                        last_stats = time.monotonic()
                        await self._refresh_stats()
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except (RedisError, OSError) as exc:
                log.warning("job events: %s; reconnecting", exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.5)

    async def _refresh_stats(self) -> None:
        raw = await self.redis.hgetall(keys.STATS)
        c = {k.decode(): float(v) for k, v in raw.items()}
        get = c.get
        ended_running = get("finished_running", 0.0)
        ended_queued = get("failed", 0.0) + get("cancelled", 0.0) - ended_running
        self._stats = {
            "queued": max(get("created", 0.0) - get("started", 0.0) - ended_queued, 0.0),
            "running": max(get("started", 0.0) - get("succeeded", 0.0) - ended_running, 0.0),
            **{s: get(s, 0.0) for s in ("succeeded", "failed", "cancelled")},
        }

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()


def _assemble(assembler: Assembler, kind: bytes, header: bytes, parts: list[bytes]) -> bytes:
    rows = [row for part in parts for row in orjson.loads(part)]
    return assembler(kind.decode(), orjson.loads(header), rows)


def _view(job_id: str, raw: dict[bytes, bytes]) -> JobView:
    def number(name: str) -> float | None:
        value = raw.get(name.encode())
        return float(value) if value else None

    state = JobState(raw[b"status"].decode())
    chunks, done = int(raw.get(b"chunks", b"1")), int(raw.get(b"chunks_done", b"0"))
    error = orjson.loads(raw[b"error"]) if raw.get(b"error") else None
    progress = 1.0 if state is JobState.succeeded else (done / chunks if chunks else 0.0)
    return JobView(
        job_id=job_id,
        kind=raw.get(b"kind", b"").decode(),
        model=raw.get(b"model", b"").decode(),
        version=raw.get(b"version", b"").decode(),
        state=state,
        progress=progress,
        created_at=number("created_at") or 0.0,
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        error=error,
        tenant=raw.get(b"tenant", b"").decode(),
        cache_key=raw.get(b"cache_key", b"").decode(),
    )
