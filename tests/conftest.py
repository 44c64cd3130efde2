"""Shared fixtures: demo models in a scratch folder and real gateway processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "german_credit.csv"
DEMO_MODELS = ("german-credit", "german-credit-logit")
# The test servers are gateways of one deployment: one server secret, so the same request
# gets the same job id (and the same bytes) from any of them, embedded or distributed, and
# one keys folder (next to the models), so receipts verify after a restart.
TEST_SERVER_SECRET = "test-deployment-server-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``xai-service serve`` as a subprocess on a free loopback port."""

    def __init__(self, models_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "XAI_MODELS_DIR": str(models_dir),
            "XAI_PORT": str(self.port),
            "XAI_HOST": "127.0.0.1",
            "XAI_WORKERS": "2",
            "XAI_RECEIPTS_PATH": str(models_dir.parent / f"receipts-{self.port}.sqlite3"),
            "XAI_KEYS_DIR": str(models_dir.parent / "keys"),
            "XAI_SERVER_SECRET": TEST_SERVER_SECRET,
            **(env or {}),
        }
        self.log = models_dir.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start_process(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, timeout: float = 600) -> ServerProcess:
        """Start and wait until /readyz answers 200."""
        self.start_process()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of the committed demo models (tests may register more)."""
    target = tmp_path_factory.mktemp("repo") / "models"
    shutil.copytree(ROOT / "models", target)
    return target


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[ServerProcess]:
    """The service as a user runs it, without auth, shared by the session."""
    process = ServerProcess(models_dir).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


# Several tenants: two keys of bank-a, one of bank-b, a key in the scopes-only format (its
# own tenant) and an admin.
TENANT_KEYS: dict[str, Any] = {
    "bank-a-officer": {"scopes": ["explain"], "tenant": "bank-a"},
    "bank-a-backend": {"scopes": ["explain"], "tenant": "bank-a"},
    "bank-b-officer": {"scopes": ["explain"], "tenant": "bank-b"},
    "plain-key": ["explain"],
    "admin-key": ["admin"],
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def tenant_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Redis + a gateway with several tenants' keys + two workers, shared by the tenancy
    and receipt tests of distributed mode."""
    import json

    from tests.distributed.conftest import Cluster

    folder = tmp_path_factory.mktemp("tenant-cluster")
    shutil.copytree(ROOT / "models", folder / "models")
    topology = Cluster(folder, folder / "models", {"XAI_API_KEYS": json.dumps(TENANT_KEYS)})
    try:
        topology.gateway.start()
        topology.add_worker()
        topology.add_worker()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # workers answer once a job runs through them
            answer = httpx.post(
                f"{topology.gateway.url}/v1/models/german-credit/explain",
                json={"instances": [_first_applicant()], "wait": 5},
                headers=bearer("admin-key"),
                timeout=30,
            )
            if answer.status_code == 200:
                break
            time.sleep(0.5)
        assert answer.status_code == 200, answer.text
        yield topology
    finally:
        topology.stop()


def _first_applicant() -> dict[str, Any]:
    row = pd.read_csv(DATA).drop(columns="creditability").iloc[0].to_dict()
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


@pytest.fixture(scope="session")
def german_credit() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="session")
def applicants(german_credit: pd.DataFrame) -> list[dict[str, Any]]:
    """The 1000 applicants as JSON-ready instances (no label)."""
    rows = german_credit.drop(columns="creditability").to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="session")
def applicant(applicants: list[dict[str, Any]]) -> dict[str, Any]:
    """Applicant #4 of the data set (label bad), denied by both demo models."""
    return applicants[4]


@pytest.fixture(scope="session")
def demo_models() -> dict[str, LoadedModel]:
    """The committed demo models, loaded in this process."""
    store = ModelStore(ROOT / "models")
    store.scan()
    return {name: LoadedModel.load(store.get(name)) for name in DEMO_MODELS}
