"""API keys and scopes; readiness before warm-up; no open service on a public address."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess

KEYS = {"officer-key": ["explain"], "admin-key": ["admin"]}


@pytest.fixture(scope="module")
def keyed_server(models_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(models_dir, {"XAI_API_KEYS": json.dumps(KEYS)})
    yield process
    process.stop()


def test_readiness_is_503_until_models_are_loaded(keyed_server: ServerProcess) -> None:
    assert keyed_server.process is None
    seen: list[int] = []
    keyed_server.start_process()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            seen.append(httpx.get(f"{keyed_server.url}/readyz", timeout=2).status_code)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if seen[-1] == 200:
            break
        time.sleep(0.05)
    assert seen[0] == 503 and seen[-1] == 200
    assert set(seen) == {503, 200}


def test_keys_and_scopes(keyed_server: ServerProcess, applicant: dict[str, Any]) -> None:
    url = keyed_server.url
    explain = f"{url}/v1/models/german-credit/explain"
    assert httpx.get(f"{url}/healthz").status_code == 200
    missing = httpx.post(explain, json={"instances": [applicant]})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(
        explain, json={"instances": [applicant]}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    officer = {"Authorization": "Bearer officer-key"}
    assert (
        httpx.post(
            explain, json={"instances": [applicant]}, headers=officer, timeout=30
        ).status_code
        == 200
    )
    assert httpx.get(f"{url}/v1/models", headers=officer).status_code == 200
    upload = httpx.post(
        f"{url}/v1/models", headers=officer, files={"manifest": ("manifest.yaml", b"name: x")}
    )
    assert upload.status_code == 403 and "admin" in upload.json()["detail"]
    admin = {"Authorization": "Bearer admin-key"}
    assert httpx.get(f"{url}/v1/models/german-credit", headers=admin).status_code == 200


def test_serve_refuses_a_public_address_without_keys() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "XAI_API_KEYS": "{}"},
    )
    assert result.returncode != 0
    assert "without API keys" in result.stderr
