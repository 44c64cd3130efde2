"""The fault suite: real processes on loopback, short limits, one batch workload.

One distributed topology (tests/distributed/conftest.py's Cluster: redis-server with
append-only persistence, a gateway, two Celery workers) serves every distributed fault
test here; each test sends the same 4,000-row batch with its own seed (a new job) and
checks the rows it gets back against a fault-free run and the model called directly.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from service.registry.loaded import LoadedModel
from tests.conftest import ROOT
from tests.distributed.conftest import Cluster

MODEL = "german-credit"
CHUNK = 20
TIME_LIMIT, REDELIVERY_SECONDS, RECONCILE_SECONDS = 5.0, 6.0, 1.0
SETTINGS = {
    "XAI_CHUNK_SIZE": str(CHUNK),
    "XAI_JOB_TIME_LIMIT": f"{TIME_LIMIT:g}",
    "XAI_REDELIVERY_SECONDS": f"{REDELIVERY_SECONDS:g}",
    "XAI_RECONCILE_SECONDS": f"{RECONCILE_SECONDS:g}",
}


@dataclass
class Batch:
    """One accepted batch job, followed through outages (503s are waited out). Every
    status seen is kept as (monotonic time, progress) to measure stalls."""

    http: httpx.Client
    job_id: str
    seen: list[tuple[float, float]] = field(default_factory=list)

    def status(self) -> dict[str, Any] | None:
        try:
            response = self.http.get(f"/v1/jobs/{self.job_id}", timeout=10)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        status: dict[str, Any] = response.json()
        self.seen.append((time.monotonic(), status["progress"]))
        return status

    def resumed_after(self, moment: float) -> float:
        """Seconds from ``moment`` until the job next made progress."""
        before = max((p for t, p in self.seen if t <= moment), default=0.0)
        return next(t for t, p in self.seen if t > moment and p > before) - moment

    def wait_progress(self, at_least: float, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and (status["progress"] >= at_least or status["status"] != "running"):
                assert status["status"] in ("queued", "running"), status
                return status
            time.sleep(0.05)
        raise AssertionError(f"job {self.job_id} made no progress in {timeout} s")

    def final(self, timeout: float = 120, states: frozenset[str] | None = None) -> dict[str, Any]:
        until = states or frozenset({"succeeded", "failed", "cancelled"})
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.status()
            if status and status["status"] in until:
                return status
            time.sleep(0.1)
        raise AssertionError(f"job {self.job_id} still not finished after {timeout} s: {status}")

    def rows(self) -> list[dict[str, Any]]:
        """The result as JSON lines: one per instance, with its index."""
        lines = self.http.get(
            f"/v1/jobs/{self.job_id}/result", params={"format": "jsonl"}
        ).content.splitlines()
        return [orjson.loads(line) for line in lines]


def batch_request(applicants: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """The workload: every applicant explained (TreeSHAP); the seed makes it a new job."""
    return {"instances": applicants, "options": {"seed": seed}, "wait": 0}


def submit(http: httpx.Client, applicants: list[dict[str, Any]], seed: int) -> Batch:
    accepted = http.post(f"/v1/models/{MODEL}/explain", json=batch_request(applicants, seed))
    assert accepted.status_code == 202, accepted.text
    return Batch(http, accepted.json()["job_id"])


def assert_no_row_lost_or_duplicated(
    rows: list[dict[str, Any]], reference: list[dict[str, Any]]
) -> None:
    """Exactly one row per instance, in order, each equal to the fault-free run's row."""
    assert [r["index"] for r in rows] == list(range(len(reference)))
    differing = [
        i
        for i, (row, ref) in enumerate(zip(rows, reference, strict=True))
        if _payload(row) != _payload(ref)
    ]
    assert differing == [], f"{len(differing)} rows differ from the fault-free run"


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return {"prediction": row["prediction"], "explanations": row["explanations"]}


@pytest.fixture(scope="package")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("faults")
    shutil.copytree(ROOT / "models", folder / "models")
    topology = Cluster(folder, folder / "models", SETTINGS)
    try:
        topology.gateway.start()
        topology.add_worker()
        topology.add_worker()
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="package")
def fault_http(fault_cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fault_cluster.gateway.url, timeout=60) as client:
        deadline = time.monotonic() + 120
        while client.get(f"/v1/models/{MODEL}").status_code != 200:
            assert time.monotonic() < deadline, "workers did not come up"
            time.sleep(0.5)
        yield client


@pytest.fixture(scope="package")
def workload(applicants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every applicant four times. A fast machine runs a TreeSHAP chunk in milliseconds
    and the 400-row batch in 0.3 s, before a fault injected "mid-batch" lands."""
    return applicants * 4


@pytest.fixture(scope="package")
def direct_predictions(
    demo_models: dict[str, LoadedModel], workload: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The model called directly in this process, one prediction per row of the batch."""
    model = demo_models[MODEL]
    return list(model.predictions(model.frame(workload)))


def checked_reference(batch: Batch, direct_predictions: list[dict[str, Any]]) -> list[Any]:
    """A fault-free run's rows, checked against the model called directly."""
    started = time.monotonic()
    assert batch.final(timeout=180)["status"] == "succeeded"
    print(f"fault-free batch: {time.monotonic() - started:.1f} s")
    rows = batch.rows()
    assert [r["index"] for r in rows] == list(range(len(direct_predictions)))
    assert [r["prediction"] for r in rows] == direct_predictions
    assert all(r["explanations"]["shap"]["evidence"]["additivity_error"] < 1e-6 for r in rows)
    return rows


@pytest.fixture(scope="package")
def reference_rows(
    fault_http: httpx.Client,
    workload: list[dict[str, Any]],
    direct_predictions: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The workload's rows from a fault-free distributed run."""
    return checked_reference(submit(fault_http, workload, seed=1), direct_predictions)
