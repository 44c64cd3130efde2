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

from tests.conftest import ServerProcess
from tests.faults.conftest import assert_no_row_lost_or_duplicated, checked_reference, submit


def _pool_processes(server: ServerProcess) -> list[psutil.Process]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def test_pool_process_killed_mid_batch_its_chunk_runs_again(
    server: ServerProcess,
    client: httpx.Client,
    workload: list[dict[str, Any]],
    direct_predictions: list[dict[str, Any]],
) -> None:
    """The session's embedded server: two pool processes, chunks of 250 rows (16 chunks,
    so both processes stay busy); one process is SIGKILLed while both run."""
    reference = checked_reference(submit(client, workload, seed=1), direct_predictions)
    batch = submit(client, workload, seed=2)
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
    assert "a worker process died (killed by SIGKILL) running a task; running it again" in (
        server.log.read_text()
    )
    deadline = time.monotonic() + 60
    while len(_pool_processes(server)) != 2:  # pebble replaced the dead process
        assert time.monotonic() < deadline
        time.sleep(0.2)
