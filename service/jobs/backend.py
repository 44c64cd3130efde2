"""The interface between the data plane and where jobs run (embedded pool or Celery)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from service.jobs.spec import TaskSpec
from service.jobs.store import JobState

# Builds a response body from a job's header (model, version, seed, ...) and its rows.
Assembler = Callable[[str, dict[str, Any], list[dict[str, Any]]], bytes]
# The same body from the header and row chunks as JSON, or None when it cannot splice them.
Splicer = Callable[[str, bytes, list[bytes]], bytes | None]


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job's record.

    A job is keyed by ``job_id`` (what its tenant was handed); its result lives in the
    shared result cache under ``cache_key`` (the content key; ``job_id`` when empty), so
    identical work of any tenant is served from one entry.
    """

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
    tenant: str = ""
    cache_key: str = ""

    @property
    def result_key(self) -> str:
        return self.cache_key or self.job_id


class JobBackend(Protocol):
    submitted: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def problem(self) -> str | None:
        """Why the backend cannot take work now, or None when it can."""

    async def lookup(self, cache_key: str, job_id: str) -> tuple[bytes | None, JobView | None]:
        """The shared result cache's entry for a content key, and the record of ``job_id``
        (one round trip where they are remote)."""

    async def submit(
        self, view: JobView, specs: list[TaskSpec], header: dict[str, Any], queue: str
    ) -> JobView:
        """Start the job unless the same one is active or done (coalescing); keep its
        tenant and cache key; on success its result goes to the cache under the cache key."""

    async def record_cached(self, view: JobView, body: bytes) -> JobView:
        """Record a job answered from the cache (``body``) as succeeded, so its id names
        it like any other job; an active job of that id is left as it is."""

    async def run(
        self,
        view: JobView,
        specs: list[TaskSpec],
        header: dict[str, Any],
        queue: str,
        timeout: float,
    ) -> JobView | None:
        """:meth:`submit`, then :meth:`wait` up to ``timeout``."""

    async def wait(self, job_id: str, timeout: float) -> JobView | None: ...

    async def view(self, job_id: str) -> JobView | None: ...

    async def result(self, job_id: str) -> bytes | None:
        """A succeeded job's response body (None for any other state)."""

    async def cancel(self, job_id: str) -> JobView | None: ...

    async def call(self, spec: TaskSpec) -> dict[str, Any]:
        """Run one uncached worker task (ping, describe, validate) and return its outcome."""

    def state_counts(self) -> dict[str, float]: ...
