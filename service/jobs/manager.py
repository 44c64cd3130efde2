"""Submit, coalesce, await and cancel jobs; every accepted job ends succeeded, failed or
cancelled, with a reason when it did not succeed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any, Protocol

from pebble import ProcessExpired

from service.jobs.cache import ResultCache
from service.jobs.spec import TaskResult, TaskSpec
from service.jobs.store import JobRecord, JobState, MemoryJobStore

Assemble = Callable[[list[dict[str, Any]]], bytes]


class Executor(Protocol):
    def submit(self, spec: TaskSpec, timeout: float | None = None) -> Future: ...


@dataclass
class _Running:
    futures: list[Future] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    result: bytes | None = None


class JobManager:
    """Runs jobs on an executor, chunk by chunk, and records their outcome."""

    def __init__(
        self, executor: Executor, store: MemoryJobStore, cache: ResultCache, time_limit: float
    ) -> None:
        self.executor, self.store, self.cache, self.time_limit = executor, store, cache, time_limit
        self._running: dict[str, _Running] = {}
        self.submitted = 0

    def find(self, job_id: str) -> JobRecord | None:
        record = self.store.get(job_id)
        if record is not None and record.state is JobState.queued:
            running = self._running.get(job_id)
            if running and any(f.running() or f.done() for f in running.futures):
                record.state, record.started_at = JobState.running, record.started_at or time.time()
        return record

    def result(self, job_id: str) -> bytes | None:
        running = self._running.get(job_id)
        return (running.result if running else None) or self.cache.get(job_id)

    def start(self, record: JobRecord, specs: list[TaskSpec], assemble: Assemble) -> JobRecord:
        """Start ``record``'s job unless the same job is already in flight (coalesced)."""
        existing = self.store.get(record.job_id)
        if existing is not None and not existing.state.finished:
            return existing
        record.chunks = len(specs)
        self._forget_expired()
        self.store.put(record)
        running = self._running[record.job_id] = _Running()
        running.futures = [self.executor.submit(spec, self.time_limit) for spec in specs]
        running.task = asyncio.get_running_loop().create_task(
            self._drive(record, running, assemble)
        )
        self.submitted += 1
        return record

    def _forget_expired(self) -> None:
        for job_id in [j for j in self._running if self.store.get(j) is None]:
            del self._running[job_id]

    async def wait(self, record: JobRecord, timeout: float) -> bool:
        """True when the job finished within ``timeout`` seconds."""
        if not record.state.finished and timeout > 0:
            try:
                await asyncio.wait_for(asyncio.shield(record.done.wait()), timeout)
            except TimeoutError:
                pass
        return record.state.finished

    def cancel(self, job_id: str) -> JobRecord | None:
        record = self.find(job_id)
        if record is None or record.state.finished:
            return record
        running = self._running.get(job_id)
        if running:
            for future in running.futures:
                future.cancel()
        record.finish(JobState.cancelled, {"status_code": 409, "message": "cancelled by request"})
        return record

    async def _drive(self, record: JobRecord, running: _Running, assemble: Assemble) -> None:
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
                    outputs[index] = outcome.get("results", [])
                    if "description" in outcome:
                        outputs[index] = [outcome["description"]]
                    record.chunks_done += 1
                    if record.state is JobState.queued:
                        record.state, record.started_at = JobState.running, time.time()
            rows = [row for chunk in outputs for row in chunk]
            body = await asyncio.to_thread(assemble, rows)
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


class _ChunkFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error
