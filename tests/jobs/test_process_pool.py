"""The embedded worker pool on real spawned processes: answers, errors, time limits,
cancellation, and processes killed at any moment (idle, between tasks, mid-task)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, TimeoutError
from pathlib import Path

import pytest

from service.jobs.process_pool import WorkerDied, WorkerPool
from service.jobs.retry import RetriedFuture


def _square(value: int) -> int:
    return value * value


def _square_slowly(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value * value


def _fails(message: str) -> None:
    raise ValueError(message)


def _answers_a_lambda() -> object:
    return lambda: None


def _marks_and_sleeps(marker: str, seconds: float) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)


def _kills_itself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pid() -> int:
    return os.getpid()


@pytest.fixture()
def pool() -> Iterator[WorkerPool]:
    processes = WorkerPool(2, multiprocessing.get_context("spawn"))
    yield processes
    processes.stop(timeout=10)


def _wait_for(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_answers_and_errors_come_back(pool: WorkerPool) -> None:
    futures = [pool.schedule(_square, args=(n,)) for n in range(50)]
    assert [f.result(timeout=60) for f in futures] == [n * n for n in range(50)]
    with pytest.raises(ValueError, match="no such applicant"):
        pool.schedule(_fails, args=("no such applicant",)).result(timeout=60)
    with pytest.raises(RuntimeError, match="the task's answer could not be sent"):
        pool.schedule(_answers_a_lambda).result(timeout=60)
    with pytest.raises(Exception, match="pickle"):
        pool.schedule(_square, args=(lambda: 1,))  # refused before it is queued
    assert pool.schedule(_square, args=(7,)).result(timeout=60) == 49


def test_a_process_that_dies_fails_only_its_task(pool: WorkerPool) -> None:
    slow = pool.schedule(_square_slowly, args=(3, 1.0))
    with pytest.raises(WorkerDied) as died:
        pool.schedule(_kills_itself).result(timeout=60)
    assert died.value.exitcode == -signal.SIGKILL
    assert slow.result(timeout=60) == 9
    _wait_for(lambda: len(pool.processes()) == 2)
    assert pool.schedule(_square, args=(5,)).result(timeout=60) == 25


def test_processes_killed_while_idle_are_replaced(pool: WorkerPool) -> None:
    assert pool.schedule(_square, args=(2,)).result(timeout=60) == 4
    for process in pool.processes():  # nothing runs: every process is idle
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
    assert pool.active
    # a task handed to a process in the instant it dies fails as WorkerDied and runs again
    again = RetriedFuture(lambda: pool.schedule(_square, args=(4,)))
    assert again.result(timeout=60) == 16
    _wait_for(lambda: len(pool.processes()) == 2)
    assert pool.schedule(_square, args=(5,)).result(timeout=60) == 25


def test_a_time_limit_kills_only_that_task(pool: WorkerPool, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    limited = pool.schedule(_marks_and_sleeps, args=(str(marker), 30), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        limited.result(timeout=30)
    assert time.monotonic() - started < 20
    _wait_for(lambda: int(marker.read_text()) not in {p.pid for p in pool.processes()})
    assert pool.schedule(_square, args=(6,)).result(timeout=60) == 36


def test_cancelling_a_running_task_kills_its_process(pool: WorkerPool, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    running = pool.schedule(_marks_and_sleeps, args=(str(marker), 30))
    _wait_for(lambda: running.running() and marker.exists() and marker.read_text())
    assert running.cancel()
    with pytest.raises(CancelledError):
        running.result(timeout=5)
    _wait_for(lambda: int(marker.read_text()) not in {p.pid for p in pool.processes()})
    assert pool.schedule(_square, args=(8,)).result(timeout=60) == 64


def test_a_cancelled_queued_task_never_runs(tmp_path: Path) -> None:
    single = WorkerPool(1, multiprocessing.get_context("spawn"))
    try:
        blocker = single.schedule(_square_slowly, args=(1, 1.0))
        marker = tmp_path / "ran"
        queued = single.schedule(_marks_and_sleeps, args=(str(marker), 0))
        assert queued.cancel() and not queued.running()
        assert blocker.result(timeout=60) == 1
        assert single.schedule(_square, args=(3,)).result(timeout=60) == 9
        assert not marker.exists()
    finally:
        single.stop(timeout=10)


def test_stop_cancels_what_has_not_finished() -> None:
    stopped = WorkerPool(1, multiprocessing.get_context("spawn"))
    running = stopped.schedule(_square_slowly, args=(1, 30))
    queued = stopped.schedule(_square, args=(2,))
    _wait_for(running.running)
    stopped.stop(timeout=10)
    assert running.cancelled() and queued.cancelled()
    assert not stopped.active and stopped.processes() == []
    with pytest.raises(RuntimeError, match="not running"):
        stopped.schedule(_square, args=(3,))


def test_no_task_is_lost_while_processes_are_killed_at_random(pool: WorkerPool) -> None:
    """Eight SIGKILLs of a random process at seeded random moments while short tasks keep
    flowing (each kill after some tasks have finished since the last, so it lands on a
    process that is idle, between two tasks or mid-task). Every task gets its own answer."""
    rng = random.Random(20261203)
    futures: list[RetriedFuture] = []
    kills: list[int] = []

    def finished() -> int:
        return sum(f.done() for f in list(futures))

    def killer() -> None:
        for _ in range(8):
            progress = finished()
            _wait_for(lambda since=progress: finished() >= since + 5, seconds=120)
            time.sleep(rng.uniform(0.0, 0.05))
            _wait_for(pool.processes)
            victim = rng.choice(pool.processes())
            assert victim.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
                kills.append(victim.pid)

    thread = threading.Thread(target=killer)
    thread.start()
    while thread.is_alive():
        assert len(futures) < 50_000, "the killer never finished"
        n = len(futures)
        futures.append(
            RetriedFuture(lambda n=n: pool.schedule(_square_slowly, args=(n, 0.002)), attempts=50)
        )
        time.sleep(0.002)
    thread.join()
    answers = [f.result(timeout=300) for f in futures]
    assert answers == [n * n for n in range(len(futures))]
    assert len(kills) >= 6, kills  # a victim may have been dying already
    assert pool.active
    live = lambda: {p.pid for p in pool.processes()}  # noqa: E731
    _wait_for(lambda: len(live()) == 2 and not live() & set(kills))
    assert pool.schedule(_pid).result(timeout=60) in live()
