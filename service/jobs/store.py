"""Job records: status, progress, error; kept for a TTL after they finish."""

from __future__ import annotations

import asyncio
import time
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
    tenant: str = ""
    cache_key: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def progress(self) -> float:
        if self.state is JobState.succeeded:
            return 1.0
        return self.chunks_done / self.chunks if self.chunks else 0.0

    def finish(self, state: JobState, error: dict[str, Any] | None = None) -> None:
        if self.state.finished:
            return
        self.state, self.error, self.finished_at = state, error, time.time()
        self.done.set()


class MemoryJobStore:
    """Job records of the embedded mode; finished ones expire after ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._jobs: dict[str, JobRecord] = {}

    def get(self, job_id: str) -> JobRecord | None:
        self._expire()
        return self._jobs.get(job_id)

    def put(self, record: JobRecord) -> None:
        self._jobs[record.job_id] = record

    def counts(self) -> dict[str, int]:
        self._expire()
        counts = {state.value: 0 for state in JobState}
        for record in self._jobs.values():
            counts[record.state.value] += 1
        return counts

    def _expire(self) -> None:
        now = time.time()
        for job_id in [
            j for j, r in self._jobs.items() if r.finished_at and now - r.finished_at > self.ttl
        ]:
            del self._jobs[job_id]
