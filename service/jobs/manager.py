"""Embedded job backend: jobs run on the local process pool, records live in memory.

Every accepted job ends succeeded, failed or cancelled, with a reason when it did not
succeed. What is remembered is bounded (see :class:`MemoryJobStore` and
:class:`MemoryCache`); a job's futures are held only while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from service.errors import ServiceError, UnavailableError, WorkerLostError, error_from_payload
from service.jobs.backend import Assembler, JobView, Splicer
from service.jobs.cache import MemoryCache
from service.jobs.process_pool import WorkerDied
from service.jobs.spec import TaskResult, TaskSpec
from service.jobs.store import JobRecord, JobState, MemoryJobStore


class Executor(Protocol):
    running: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(
        self, spec: TaskSpec, timeout: float | None = None, encoded: bool = False
    ) -> Future: ...


@dataclass
class _Running:
    futures: list[Future] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class EmbeddedJobs:
    """Runs jobs chunk by chunk on an executor and records their outcome in memory."""

    def __init__(
        self,
        executor: Executor,
        store: MemoryJobStore,
        cache: MemoryCache,
        time_limit: float,
        assembler: Assembler,
        splicer: Splicer | None = None,
    ) -> None:
        self.executor, self.store, self.cache = executor, store, cache
        self.time_limit, self.assembler, self.splicer = time_limit, assembler, splicer
        self._running: dict[str, _Running] = {}
        self.submitted = 0

    async def start(self) -> None:
        self.executor.start()

    async def stop(self) -> None:
        self.executor.stop()

    async def problem(self) -> str | None:
        return None if self.executor.running else "the worker pool is not running"

    async def lookup(self, cache_key: str, job_id: str) -> tuple[bytes | None, JobView | None]:
        return self.cache.get(cache_key), await self.view(job_id)

    async def view(self, job_id: str) -> JobView | None:
        record = self.store.get(job_id)
        return None if record is None else self._current(record)

    async def result(self, job_id: str) -> bytes | None:
        record = self.store.get(job_id)
        if record is None or record.state is not JobState.succeeded:
            return None
        return record.result if record.result is not None else self.cache.get(record.cache_key)

    async def submit(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> JobView:
        existing = self.store.get(view.job_id)
        if existing is not None and not existing.state.finished:
            return _view(existing)
        record = _record(view, chunks=len(specs))
        self.store.put(record)
        running = self._running[record.job_id] = _Running()
        running.futures = [
            self.executor.submit(spec, self.time_limit, encoded=True) for spec in specs
        ]
        running.task = asyncio.get_running_loop().create_task(self._drive(record, running, header))
        self.submitted += 1
        return _view(record)

    async def record_cached(self, view: JobView, body: bytes) -> JobView:
        existing = self.store.get(view.job_id)
        if existing is not None and not existing.state.finished:
            return _view(existing)
        record = _record(view, chunks=0)
        self.store.put(record)
        record.started_at = record.created_at
        # the record keeps its body: the LRU cache may evict the entry before the record goes
        self.store.finish(record, JobState.succeeded, result=body)
        return _view(record)

    async def run(
        self,
        view: JobView,
        specs: list[TaskSpec],
        header: dict[str, Any],
        queue: str,
        timeout: float,
    ) -> JobView | None:
        await self.submit(view, specs, header, queue)
        return await self.wait(view.job_id, timeout)

    async def wait(self, job_id: str, timeout: float) -> JobView | None:
        record = self.store.get(job_id)
        if record is None:
            return None
        if not record.state.finished and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.done.wait(), timeout)
        return self._current(record)  # this request's record, even if evicted since

    async def cancel(self, job_id: str) -> JobView | None:
        record = self.store.get(job_id)
        if record is None or record.state.finished:
            return None if record is None else _view(record)
        running = self._running.get(job_id)
        if running:
            for future in running.futures:
                future.cancel()
        self.store.finish(
            record, JobState.cancelled, {"status_code": 409, "message": "cancelled by request"}
        )
        return _view(record)

    async def call(self, spec: TaskSpec) -> dict[str, Any]:
        if not self.executor.running:
            raise UnavailableError("the worker pool is not running")
        try:
            outcome: dict[str, Any] = await asyncio.wrap_future(
                self.executor.submit(spec, self.time_limit)
            )
        except FutureTimeoutError as exc:
            raise ServiceError("worker task exceeded its time limit") from exc
        except WorkerDied as exc:
            raise WorkerLostError(f"worker process died: {exc}") from exc
        if "error" in outcome:
            raise error_from_payload(outcome["error"])
        return outcome

    def state_counts(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.store.counts().items()}

    def _current(self, record: JobRecord) -> JobView:
        """The record's view; a queued job whose chunk a worker has taken is running."""
        if record.state is JobState.queued:
            running = self._running.get(record.job_id)
            if running and any(f.running() or f.done() for f in running.futures):
                self.store.start(record)
        return _view(record)

    async def _drive(self, record: JobRecord, running: _Running, header: dict[str, Any]) -> None:
        parts: list[bytes] = [b"[]" for _ in running.futures]
        pending = {asyncio.wrap_future(f): i for i, f in enumerate(running.futures)}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    outcome = self._outcome(future)
                    if "error" in outcome:
                        raise _ChunkFailed(outcome["error"])
                    parts[index] = outcome["rows_json"]
                    record.chunks_done += 1
                    self.store.start(record)
            body = await asyncio.to_thread(self._body, record.kind, header, parts)
            self.cache.set(record.cache_key, body)
            self.store.finish(record, JobState.succeeded, result=body)
        except _ChunkFailed as failure:
            for future in pending:
                future.cancel()
            self.store.finish(record, JobState.failed, failure.error)
        except Exception as exc:  # noqa: BLE001 - never leave a job running
            for future in pending:
                future.cancel()
            self.store.finish(
                record,
                JobState.failed,
                {"status_code": 500, "message": f"{type(exc).__name__}: {exc}"},
            )
        finally:
            self.store.finish(
                record, JobState.cancelled, {"status_code": 409, "message": "cancelled"}
            )
            if self._running.get(record.job_id) is running:  # not a resubmission's
                del self._running[record.job_id]

    def _body(self, kind: str, header: dict[str, Any], parts: list[bytes]) -> bytes:
        """The job's document from its chunks' rows as the workers encoded them: joined as
        bytes where the kind allows (the assembler's bytes), else parsed and assembled."""
        if self.splicer is not None:
            body = self.splicer(
                kind, orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY), parts
            )
            if body is not None:
                return body
        return self.assembler(kind, header, [row for part in parts for row in orjson.loads(part)])

    def _outcome(self, future: asyncio.Future[TaskResult]) -> TaskResult:
        try:
            return future.result()
        except (asyncio.CancelledError, FutureCancelledError):
            return {"error": {"status_code": 409, "message": "cancelled"}}
        except FutureTimeoutError:
            return {
                "error": {
                    "status_code": 504,
                    "message": (
                        f"exceeded the hard time limit of {self.time_limit:g} s; "
                        "the worker was stopped"
                    ),
                }
            }
        except WorkerDied as exc:
            return {"error": {"status_code": 500, "message": f"worker process died ({exc})"}}


def _record(view: JobView, chunks: int) -> JobRecord:
    return JobRecord(
        job_id=view.job_id,
        kind=view.kind,
        model=view.model,
        version=view.version,
        chunks=chunks,
        tenant=view.tenant,
        cache_key=view.result_key,
    )


def _view(record: JobRecord) -> JobView:
    return JobView(
        job_id=record.job_id,
        kind=record.kind,
        model=record.model,
        version=record.version,
        state=record.state,
        progress=record.progress,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=record.error,
        tenant=record.tenant,
        cache_key=record.cache_key,
    )


class _ChunkFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error
