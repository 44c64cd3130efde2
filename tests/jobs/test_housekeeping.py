"""A gateway remembering 20,000 finished jobs answers a cache miss as fast as a fresh one.

Two embedded backends built as ``job_backend`` builds them share one real worker pool and
differ only in what they remember. One is filled with 20,000 jobs, each submitted, run on
the pool, awaited and finished through the backend's own ``submit``/``wait`` (the calls the
data plane makes for every request); the jobs are worker pings, the cheapest task, so that
filling takes seconds. Cache misses (predict requests for new applicants through the data
plane) are then timed on both, interleaved so that the shared machine's load hits both
alike, and their medians compared.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from service.gateway import schemas
from service.gateway.app import job_backend
from service.gateway.dataplane import DataPlane
from service.gateway.documents import assemble
from service.gateway.tenancy import OPEN_CALLER
from service.jobs.backend import JobView
from service.jobs.cache import MemoryCache
from service.jobs.manager import EmbeddedJobs
from service.jobs.spec import TaskKind
from service.jobs.store import JobState, MemoryJobStore
from service.registry.store import ModelStore
from service.settings import Settings

MODEL = "german-credit"
REMEMBERED = 20_000
CONCURRENCY = 64
MISSES = 15
FILL_BUDGET_SECONDS = 240  # ~15 s on a quiet machine; with an O(n) step per job, hours


def _distinct(applicants: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """Applicant ``index % 1000`` with a credit amount of its own (a distinct content key)."""
    return {**applicants[index % len(applicants)], "credit_amount": 100 + index}


async def _timed_predict(plane: DataPlane, instance: dict[str, Any]) -> float:
    started = time.perf_counter()
    outcome = await plane.predict(
        MODEL, None, schemas.PredictRequest(instances=[instance]), OPEN_CALLER
    )
    elapsed = time.perf_counter() - started
    assert (outcome.status, outcome.cache) == (200, "miss")
    return elapsed


async def _compare(models_dir: Path, keys_dir: Path, applicants: list[dict[str, Any]]) -> None:
    settings = Settings(
        models_dir=models_dir,
        keys_dir=keys_dir,
        workers=1,  # misses run one at a time; pings need no parallelism
        job_max_finished=REMEMBERED * 2,  # so that all of them are really remembered
        job_max_result_bytes=1 << 30,
        redis_url=None,
    )
    store = ModelStore(models_dir)
    store.scan()
    filled_jobs = job_backend(settings)
    assert isinstance(filled_jobs, EmbeddedJobs)
    fresh_jobs = EmbeddedJobs(
        filled_jobs.executor,  # the same worker processes
        MemoryJobStore(
            settings.job_ttl_seconds, settings.job_max_finished, settings.job_max_result_bytes
        ),
        MemoryCache(settings.cache_max_entries, settings.cache_max_bytes),
        settings.job_time_limit,
        assemble,
    )
    filled, fresh = DataPlane(settings, store, filled_jobs), DataPlane(settings, store, fresh_jobs)
    await filled_jobs.start()
    try:
        await filled.warm_up()
        await fresh.warm_up()

        gate = asyncio.Semaphore(CONCURRENCY)

        async def remember(index: int) -> None:
            async with gate:
                view = JobView(
                    job_id=hashlib.sha256(b"remembered %d" % index).hexdigest(),
                    kind=TaskKind.ping.value,
                    model=MODEL,
                    version="-",
                    state=JobState.queued,
                    progress=0.0,
                    created_at=time.time(),
                )
                await filled_jobs.submit(view, [{"kind": TaskKind.ping}], {}, "interactive")
                done = await filled_jobs.wait(view.job_id, 60)
                assert done is not None and done.state is JobState.succeeded

        started = time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(remember(i) for i in range(REMEMBERED))), FILL_BUDGET_SECONDS
            )
        except TimeoutError:
            done = filled_jobs.store.counts()["succeeded"]
            pytest.fail(
                f"only {done} of {REMEMBERED} jobs finished in {FILL_BUDGET_SECONDS} s: "
                "a job costs more the more jobs are remembered"
            )
        fill_seconds = time.monotonic() - started
        counts = filled_jobs.store.counts()
        assert counts["succeeded"] == REMEMBERED, counts
        assert counts["queued"] == counts["running"] == 0
        assert len(filled_jobs.store) == REMEMBERED

        fresh_times, filled_times = [], []
        for j in range(MISSES):
            fresh_times.append(
                await _timed_predict(fresh, _distinct(applicants, REMEMBERED + 2 * j))
            )
            filled_times.append(
                await _timed_predict(filled, _distinct(applicants, REMEMBERED + 2 * j + 1))
            )
        fresh_median = statistics.median(fresh_times)
        filled_median = statistics.median(filled_times)
        ratio = filled_median / fresh_median
        assert ratio < 2.0, (
            f"a miss takes {filled_median * 1e3:.1f} ms with {REMEMBERED} jobs remembered, "
            f"{fresh_median * 1e3:.1f} ms on a fresh backend ({ratio:.2f}x; filling took "
            f"{fill_seconds:.0f} s)"
        )
    finally:
        await filled_jobs.stop()


def test_remembered_jobs_do_not_slow_down_a_cache_miss(
    models_dir: Path, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    asyncio.run(_compare(models_dir, tmp_path / "keys", applicants))
