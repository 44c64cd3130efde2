"""The interface between the data plane and where jobs run (embedded pool or Celery)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from service.jobs.spec import TaskSpec
from service.jobs.store import JobState

# Builds a response body from a job's header (model, version, seed, ...) and its rows.
Assembler = Callable[[str, dict[str, Any], list[dict[str, Any]]], bytes]


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job's record."""

    job_id: str
    kind: str
    model: str
    version: str
    state: JobState
    progress: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None


class JobBackend(Protocol):
    submitted: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def problem(self) -> str | None:
        """Why the backend cannot take work now, or None when it can."""

    async def cached(self, job_id: str) -> bytes | None: ...

    async def submit(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> JobView:
        """Start the job unless the same one is active or done (coalescing)."""

    async def wait(self, job_id: str, timeout: float) -> JobView | None: ...

    async def view(self, job_id: str) -> JobView | None: ...

    async def result(self, job_id: str) -> bytes | None: ...

    async def cancel(self, job_id: str) -> JobView | None: ...

    async def call(self, spec: TaskSpec) -> dict[str, Any]:
        """Run one uncached worker task (ping, describe, validate) and return its outcome."""

    def state_counts(self) -> dict[str, float]: ...
