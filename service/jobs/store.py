"""Job records of the embedded mode: status, progress, error and result, bounded.

Active records (queued, running) are kept until they finish and are never dropped.
Finished ones are kept, with their result, in the order they finished; every finished
record has the same time to live, so that order is also their order of expiry. Expiry and
eviction therefore only ever look at the oldest finished record: every operation is O(1)
amortised, with no scan of the records however many are remembered.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


@dataclass
class JobRecord:
    """One job of one tenant; its result is cached under ``cache_key`` (its content key)."""

    job_id: str
    kind: str
    model: str
    version: str
    state: JobState = JobState.queued
    chunks: int = 1
    chunks_done: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    result: bytes | None = None  # the response body of a succeeded job
    tenant: str = ""
    cache_key: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def progress(self) -> float:
        if self.state is JobState.succeeded:
            return 1.0
        return self.chunks_done / self.chunks if self.chunks else 0.0


class MemoryJobStore:
    """Records of active jobs, and of at most ``max_finished`` finished ones holding at most
    ``max_result_bytes`` of results (the newest is kept even when it alone is larger),
    each for ``ttl`` seconds after it finished; the oldest finished go first."""

    def __init__(
        self,
        ttl: float,
        max_finished: int,
        max_result_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.max_finished, self.max_result_bytes = ttl, max_finished, max_result_bytes
        self._clock = clock
        self._active: dict[str, JobRecord] = {}
        # job id -> (expiry deadline, record), in finishing order = deadline order
        self._finished: OrderedDict[str, tuple[float, JobRecord]] = OrderedDict()
        self._counts = {state: 0 for state in JobState}
        self.result_bytes = 0

    def get(self, job_id: str) -> JobRecord | None:
        self._expire()
        record = self._active.get(job_id)
        if record is not None:
            return record
        entry = self._finished.get(job_id)
        return None if entry is None else entry[1]

    def put(self, record: JobRecord) -> None:
        """Add a new active record; it replaces a finished record of the same job."""
        if record.job_id in self._active:
            raise ValueError(f"job {record.job_id} is already active")
        if record.job_id in self._finished:
            self._drop(record.job_id)
        self._active[record.job_id] = record
        self._counts[record.state] += 1

    def start(self, record: JobRecord) -> None:
        """Mark a queued record running (a no-op in any other state)."""
        if record.state is JobState.queued:
            self._move(record, JobState.running)
            record.started_at = time.time()

    def finish(
        self,
        record: JobRecord,
        state: JobState,
        error: dict[str, Any] | None = None,
        result: bytes | None = None,
    ) -> bool:
        """Finish an active record (wakes its waiters); False when it had finished already."""
        if record.state.finished:
            return False
        self._move(record, state)
        record.error, record.result, record.finished_at = error, result, time.time()
        record.done.set()
        if self._active.get(record.job_id) is record:
            del self._active[record.job_id]
            self._finished[record.job_id] = (self._clock() + self.ttl, record)
            self.result_bytes += len(result or b"")
            self._evict()
        return True

    def counts(self) -> dict[str, int]:
        self._expire()
        return {state.value: count for state, count in self._counts.items()}

    def __len__(self) -> int:
        return len(self._active) + len(self._finished)

    def _move(self, record: JobRecord, state: JobState) -> None:
        if self._active.get(record.job_id) is record:
            self._counts[record.state] -= 1
            self._counts[state] += 1
        record.state = state

    def _expire(self) -> None:
        now = self._clock()
        while self._finished:
            job_id, (deadline, _) = next(iter(self._finished.items()))
            if deadline > now:
                return
            self._drop(job_id)

    def _evict(self) -> None:
        finished = self._finished
        while len(finished) > self.max_finished or (
            self.result_bytes > self.max_result_bytes and len(finished) > 1
        ):
            self._drop(next(iter(finished)))

    def _drop(self, job_id: str) -> None:
        _, record = self._finished.pop(job_id)
        self._counts[record.state] -= 1
        self.result_bytes -= len(record.result or b"")
