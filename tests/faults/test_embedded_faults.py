"""Faults of the embedded mode (one gateway process with its own worker pool).

A pool process killed mid-batch costs only a retry of its chunk. What cannot hold: the
gateway process keeps its jobs in memory, so killing it loses the jobs it had accepted
(docs/reliability.md says so)."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import ServerProcess
from tests.faults.conftest import (
    MODEL,
    assert_no_row_lost_or_duplicated,
    checked_reference,
    submit,
)


def _pool_processes(server: ServerProcess) -> list[psutil.Process]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def _wait_for_full_pool(server: ServerProcess, gone: frozenset[int] = frozenset()) -> None:
    """Until the pool has its two processes again, none of them one of the ``gone`` pids."""
    deadline = time.monotonic() + 60
    while len(pids := {p.pid for p in _pool_processes(server)}) != 2 or pids & gone:
        assert time.monotonic() < deadline, pids
        time.sleep(0.2)


def test_pool_process_killed_mid_batch_its_chunk_runs_again(
    server: ServerProcess,
    client: httpx.Client,
    workload: list[dict[str, Any]],
    direct_predictions: list[dict[str, Any]],
) -> None:
    """The session's embedded server: two pool processes, chunks of 250 rows (16 chunks,
    so both processes stay busy); one process is SIGKILLed while both run. A kill that
    lands in the instant between two chunks costs no retry (nothing was running on it),
    so the fault is tried on up to three batches until one kill hits a running chunk."""
    reference = checked_reference(submit(client, workload, seed=1), direct_predictions)
    retried = "a worker process died (killed by SIGKILL) running a task; running it again"
    for seed in (2, 3, 4):
        retries_before = server.log.read_text().count(retried)
        batch = submit(client, workload, seed=seed)
        deadline = time.monotonic() + 60
        while (status := batch.status()) is None or status["status"] == "queued":
            assert time.monotonic() < deadline, "the batch never started"
            time.sleep(0.05)
        assert status["status"] == "running" and status["progress"] == 0.0, status
        pool = _pool_processes(server)
        assert len(pool) == 2
        pool[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        final = batch.final(timeout=120)
        assert final["status"] == "succeeded", final
        print(f"\nembedded pool process SIGKILL: succeeded {time.monotonic() - killed:.1f} s after")
        assert_no_row_lost_or_duplicated(batch.rows(), reference)
        _wait_for_full_pool(server, frozenset({pool[0].pid}))  # the dead one was replaced
        if server.log.read_text().count(retried) > retries_before:
            break
    else:
        pytest.fail("none of three kills hit a running chunk")


def test_idle_pool_processes_killed_the_service_still_answers(
    server: ServerProcess,
    client: httpx.Client,
    workload: list[dict[str, Any]],
    direct_predictions: list[dict[str, Any]],
) -> None:
    """Every pool process SIGKILLed while nothing runs (as an out-of-memory killer might):
    the next requests are answered and the service stays ready; nothing is broken."""
    _wait_for_full_pool(server)
    pool = _pool_processes(server)
    for process in pool:
        process.send_signal(signal.SIGKILL)
    for applicant, expected in zip(workload[:5], direct_predictions[:5], strict=True):
        answer = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [applicant]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [expected]
    assert client.get("/readyz").status_code == 200
    _wait_for_full_pool(server, frozenset(p.pid for p in pool))
