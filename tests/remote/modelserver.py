"""MLServer as the tests' model server: its own virtual environment (made by
``scripts/prepare_mlserver.sh``), its scikit-learn runtime, a scratch model repository
and free loopback ports. The service never loads pickle: the joblib files here are the
model server's, written in the test's scratch folder from the demo skops pipelines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import sklearn

from tests.conftest import ROOT, free_port

VENV = Path(os.environ.get("XAI_MLSERVER_VENV") or ROOT / ".tmp" / "mlserver-venv")  # empty: unset
STARTUP_SECONDS = 180


def prepare_venv() -> Path:
    """The MLServer environment (created once; ``make test`` prepares it beforehand)."""
    if not (VENV / "bin" / "mlserver").is_file():
        subprocess.run(["bash", str(ROOT / "scripts" / "prepare_mlserver.sh")], check=True)
    found = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import sklearn; print(sklearn.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if found != sklearn.__version__:
        raise RuntimeError(
            f"MLServer's scikit-learn is {found}, the service's {sklearn.__version__}: "
            "predictions could differ; rerun scripts/prepare_mlserver.sh"
        )
    return VENV


class ModelServer:
    """``mlserver start`` on a scratch repository, one folder per served model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "mlserver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.venv = prepare_venv()
        ports = {"grpc_port": free_port(), "metrics_port": free_port()}
        settings = {"host": "127.0.0.1", "http_port": self.port, **ports}
        settings |= {"metrics_endpoint": None, "parallel_workers": 0, "debug": False}
        (root / "settings.json").write_text(json.dumps(settings))

    def serve(self, name: str, model: Any) -> None:
        """Put a scikit-learn model in the repository under ``name`` (read at start or
        on :meth:`reload`)."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        joblib.dump(model, folder / "model.joblib")
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (folder / "model-settings.json").write_text(json.dumps(settings))

    def reload(self, name: str) -> None:
        """Load the model under ``name`` again from the repository (a redeployment)."""
        response = httpx.post(f"{self.url}/v2/repository/models/{name}/load", timeout=60)
        response.raise_for_status()

    def start(self) -> ModelServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "mlserver"), "start", str(self.root)],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")},
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"mlserver not ready in time: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
