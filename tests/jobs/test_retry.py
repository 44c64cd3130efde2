"""Embedded retries on a real process pool: a task whose process dies runs again; one
that kills every process it runs on fails with the cause; time limits are not retried."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, TimeoutError
from pathlib import Path

import pytest

from service.jobs.process_pool import WorkerDied, WorkerPool
from service.jobs.retry import RetriedFuture, cause


def _dies_until(marker: str, survive_after: int) -> int:
    """Count this run in ``marker``; SIGKILL the own process until the count is reached."""
    runs = Path(marker)
    count = int(runs.read_text() or 0) + 1 if runs.exists() else 1
    runs.write_text(str(count))
    if count < survive_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return count


def _sleeps(marker: str, seconds: float) -> None:
    runs = Path(marker)
    runs.write_text(str(int(runs.read_text() or 0) + 1 if runs.exists() else 1))
    time.sleep(seconds)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    processes = WorkerPool(1, multiprocessing.get_context("spawn"))
    yield processes
    processes.stop(timeout=10)


def test_a_task_whose_process_died_runs_again(pool: WorkerPool, tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    future = RetriedFuture(lambda: pool.schedule(_dies_until, args=(marker, 3)))
    assert future.result(timeout=60) == 3  # killed twice, then it ran to the end


def test_a_task_that_kills_each_process_fails_with_the_cause(
    pool: WorkerPool, tmp_path: Path
) -> None:
    marker = str(tmp_path / "runs")
    future = RetriedFuture(lambda: pool.schedule(_dies_until, args=(marker, 99)))
    with pytest.raises(WorkerDied) as failure:
        future.result(timeout=60)
    assert str(failure.value) == (
        "on each of 3 tries: killed by SIGKILL, killed by SIGKILL, killed by SIGKILL"
    )
    assert (tmp_path / "runs").read_text() == "3"


def test_a_time_limit_is_not_retried(pool: WorkerPool, tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    future = RetriedFuture(lambda: pool.schedule(_sleeps, args=(marker, 30), timeout=1))
    with pytest.raises(TimeoutError):
        future.result(timeout=60)
    assert (tmp_path / "runs").read_text() == "1"


def test_cancelling_stops_the_running_task(pool: WorkerPool, tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    future = RetriedFuture(lambda: pool.schedule(_sleeps, args=(marker, 30)))
    deadline = time.monotonic() + 30
    while not future.running():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert future.cancel()
    with pytest.raises(CancelledError):
        future.result(timeout=5)
    # the pool's process was stopped and replaced: a new task runs at once
    assert pool.schedule(_dies_until, args=(str(tmp_path / "next"), 1)).result(timeout=60) == 1


def test_exit_codes_in_words() -> None:
    assert cause(-9) == "killed by SIGKILL"
    assert cause(-11) == "killed by SIGSEGV"
    assert cause(3) == "exited with code 3"
