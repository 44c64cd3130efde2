"""A runaway job is stopped at its hard time limit and reported failed; service lives on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess

RUNAWAY = {"shap": {"algorithm": "sampling", "permutations": 2048, "background_rows": 200}}


@pytest.fixture(scope="module")
def strict_server(models_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(models_dir, {"XAI_JOB_TIME_LIMIT": "2"}).start()
    yield process
    process.stop()


def test_runaway_job_fails_with_a_reason(
    strict_server: ServerProcess, applicants: list[dict[str, Any]]
) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=60) as client:
        started = time.monotonic()
        response = client.post(
            "/v1/models/german-credit/explain",
            json={"instances": applicants[10:12], "options": RUNAWAY, "wait": 30},
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert "hard time limit of 2 s" in response.json()["detail"]
        assert elapsed < 15
        status = client.get(f"/v1/jobs/{response.headers['x-job-id']}").json()
        assert status["status"] == "failed"
        assert status["error"]["status_code"] == 504
        # The killed worker was replaced: both workers still serve.
        for offset in range(4):
            ok = client.post(
                "/v1/models/german-credit/explain", json={"instances": [applicants[offset]]}
            )
            assert ok.status_code == 200


def test_accepted_runaway_job_ends_failed_not_running(
    strict_server: ServerProcess, applicants: list[dict[str, Any]]
) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=60) as client:
        accepted = client.post(
            "/v1/models/german-credit/explain",
            json={"instances": applicants[20:22], "options": RUNAWAY, "wait": 0},
        )
        assert accepted.status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = client.get(accepted.headers["location"]).json()
            if status["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert status["status"] == "failed"
        assert "hard time limit" in status["error"]["message"]
