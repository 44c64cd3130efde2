"""Embedded job backend: jobs run on the local process pool, records live in memory.

Every accepted job ends succeeded, failed or cancelled, with a reason when it did not
succeed.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any, Protocol

from pebble import ProcessExpired

from service.errors import ServiceError, UnavailableError, WorkerLostError, error_from_payload
from service.jobs.backend import Assembler, JobView
from service.jobs.cache import MemoryCache
from service.jobs.spec import TaskResult, TaskSpec
from service.jobs.store import JobRecord, JobState, MemoryJobStore


class Executor(Protocol):
    running: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, spec: TaskSpec, timeout: float | None = None) -> Future: ...


@dataclass
class _Running:
    futures: list[Future] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    result: bytes | None = None


class EmbeddedJobs:
    """Runs jobs chunk by chunk on an executor and records their outcome in memory."""

    def __init__(
        self,
        executor: Executor,
        store: MemoryJobStore,
        cache: MemoryCache,
        time_limit: float,
        assembler: Assembler,
    ) -> None:
        self.executor, self.store, self.cache = executor, store, cache
        self.time_limit, self.assembler = time_limit, assembler
        self._running: dict[str, _Running] = {}
        self.submitted = 0

    async def start(self) -> None:
        self.executor.start()

    async def stop(self) -> None:
        self.executor.stop()

    async def problem(self) -> str | None:
        return None if self.executor.running else "the worker pool is not running"

    async def cached(self, job_id: str) -> bytes | None:
        return self.cache.get(job_id)

    async def view(self, job_id: str) -> JobView | None:
        record = self.store.get(job_id)
        if record is None:
            return None
        if record.state is JobState.queued:
            running = self._running.get(job_id)
            if running and any(f.running() or f.done() for f in running.futures):
                record.state, record.started_at = JobState.running, time.time()
        return _view(record)

    async def result(self, job_id: str) -> bytes | None:
        running = self._running.get(job_id)
        return (running.result if running else None) or self.cache.get(job_id)

    async def submit(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> JobView:
        existing = self.store.get(view.job_id)
        if existing is not None and not existing.state.finished:
            return _view(existing)
        record = JobRecord(
            job_id=view.job_id,
            kind=view.kind,
            model=view.model,
            version=view.version,
            chunks=len(specs),
        )
        self._forget_expired()
        self.store.put(record)
        running = self._running[record.job_id] = _Running()
        running.futures = [self.executor.submit(spec, self.time_limit) for spec in specs]
        running.task = asyncio.get_running_loop().create_task(self._drive(record, running, header))
        self.submitted += 1
        return _view(record)

    async def wait(self, job_id: str, timeout: float) -> JobView | None:
        record = self.store.get(job_id)
        if record is None:
            return None
        if not record.state.finished and timeout > 0:
            try:
                await asyncio.wait_for(asyncio.shield(record.done.wait()), timeout)
            except TimeoutError:
                pass
        return await self.view(job_id)

    async def cancel(self, job_id: str) -> JobView | None:
        record = self.store.get(job_id)
        if record is None or record.state.finished:
            return None if record is None else _view(record)
        running = self._running.get(job_id)
        if running:
            for future in running.futures:
                future.cancel()
        record.finish(JobState.cancelled, {"status_code": 409, "message": "cancelled by request"})
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
        except ProcessExpired as exc:
            raise WorkerLostError(f"worker process died: {exc}") from exc
        if "error" in outcome:
            raise error_from_payload(outcome["error"])
        return outcome

    def state_counts(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.store.counts().items()}

    def _forget_expired(self) -> None:
        for job_id in [j for j in self._running if self.store.get(j) is None]:
            del self._running[job_id]

    async def _drive(self, record: JobRecord, running: _Running, header: dict[str, Any]) -> None:
        outputs: list[list[dict[str, Any]]] = [[] for _ in running.futures]
        pending = {asyncio.wrap_future(f): i for i, f in enumerate(running.futures)}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    outcome = self._outcome(future)
                    if "error" in outcome:
                        raise _ChunkFailed(outcome["error"])
                    outputs[index] = outcome.get("results") or [outcome.get("description", {})]
                    record.chunks_done += 1
                    if record.state is JobState.queued:
                        record.state, record.started_at = JobState.running, time.time()
            rows = [row for chunk in outputs for row in chunk]
            body = await asyncio.to_thread(self.assembler, record.kind, header, rows)
            running.result = body
            self.cache.set(record.job_id, body)
            record.finish(JobState.succeeded)
        except _ChunkFailed as failure:
            for future in pending:
                future.cancel()
            record.finish(JobState.failed, failure.error)
        except Exception as exc:  # noqa: BLE001 - never leave a job running
            for future in pending:
                future.cancel()
            record.finish(
                JobState.failed, {"status_code": 500, "message": f"{type(exc).__name__}: {exc}"}
            )
        finally:
            if not record.state.finished:
                record.finish(JobState.cancelled, {"status_code": 409, "message": "cancelled"})

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
        except ProcessExpired as exc:
            return {"error": {"status_code": 500, "message": f"worker process died ({exc})"}}


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
    )


class _ChunkFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error
