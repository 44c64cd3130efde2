"""A real topology as processes: redis-server + gateway + workers (what compose runs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT, ServerProcess, free_port

TIME_LIMIT = "8"
REDELIVERY = "12"


class RedisProcess:
    """redis-server on a free port with append-only persistence in a scratch folder."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it with apt-get)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """End redis-server with ``sig`` (SIGKILL: a crash; SIGTERM: a clean shutdown)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


class WorkerProcess:
    """``xai-service worker`` as a subprocess (its own process group)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.cli",
                    "worker",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "INFO",
                ],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool child), as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def ran(self, task_fragment: str) -> bool:
        return task_fragment in self.log.read_text(errors="replace")


class Cluster:
    def __init__(self, folder: Path, models_dir: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.redis = RedisProcess(folder).start()
        self.env = {
            **os.environ,
            "XAI_REDIS_URL": self.redis.url,
            "XAI_MODELS_DIR": str(models_dir),
            "XAI_JOB_TIME_LIMIT": TIME_LIMIT,
            "XAI_REDELIVERY_SECONDS": REDELIVERY,
            "XAI_CHUNK_SIZE": "100",
            "XAI_RECONCILE_SECONDS": "1",
            # gateway and workers share the signing keys (workers never need the server
            # secret: the gateway's ServerProcess has it)
            "XAI_KEYS_DIR": str(folder / "keys"),
            **(env or {}),
        }
        self.gateway = ServerProcess(
            models_dir, {k: v for k, v in self.env.items() if k.startswith("XAI_")}
        )
        self.workers: list[WorkerProcess] = []

    def add_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.folder / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.gateway.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Its own copy of the demo models: tests here register versions."""
    folder = tmp_path_factory.mktemp("cluster")
    shutil.copytree(ROOT / "models", folder / "models")
    topology = Cluster(folder, folder / "models")
    try:
        topology.gateway.start()
        topology.add_worker()
        topology.add_worker()
        yield topology
    finally:
        topology.stop()
