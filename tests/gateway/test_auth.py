"""API keys and scopes, checked before a body is read; body limits while it streams;
readiness before warm-up; no open service on a public address."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.gateway.app import create_app
from service.gateway.gate import required_scopes
from service.settings import Scope, Settings
from tests.conftest import ROOT, ServerProcess

KEYS = {"officer-key": ["explain"], "admin-key": ["admin"]}
MAX_BODY, MAX_UPLOAD = 1 << 20, 4 << 20
PUBLIC_ROUTES = {"/healthz", "/readyz", "/metrics", "/", "/dashboard"}


KEYED_ENV = {
    "XAI_API_KEYS": json.dumps(KEYS),
    "XAI_MAX_BODY_BYTES": str(MAX_BODY),
    "XAI_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
}


@pytest.fixture(scope="module")
def keyed_server(models_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(models_dir, KEYED_ENV).start()
    yield process
    process.stop()


def test_readiness_is_503_until_models_are_loaded(models_dir: Path) -> None:
    server = ServerProcess(models_dir, KEYED_ENV)
    seen: list[int] = []
    try:
        server.start_process()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                seen.append(httpx.get(f"{server.url}/readyz", timeout=2).status_code)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if seen[-1] == 200:
                break
            time.sleep(0.05)
    finally:
        server.stop()
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


def test_every_api_route_declares_the_scope_the_gate_enforces() -> None:
    """The gate reads the scopes from the routes' ``require`` dependencies: a /v1 route
    without one would be open to anyone."""
    from fastapi.routing import APIRoute, iter_route_contexts

    app = create_app(Settings(api_keys=KEYS))
    scopes = {
        (route.path, method): required_scopes(route.dependant)
        for route in iter_route_contexts(app.router.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods
    }
    assert {path for (path, _), needed in scopes.items() if not needed} == PUBLIC_ROUTES
    admin = {key for key, needed in scopes.items() if Scope.admin in needed}
    assert admin == {("/v1/models", "POST"), ("/v1/models/{name}/versions/{version_id}", "DELETE")}


def _first_answer(url: str, head: str, sent: bytes, wait: float = 10.0) -> tuple[float, str]:
    """Send ``head`` and the first bytes of a body it declares much larger, then read the
    answer: (seconds to the first answer byte, the status line)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + b"\r\n" + sent)
        answer = sock.recv(65536)
        return time.monotonic() - started, answer.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize(
    ("path", "content_type", "key", "status"),
    [
        ("/v1/models/german-credit/explain", "application/json", None, 401),
        ("/v1/models/german-credit/explain", "application/json", "stolen", 401),
        ("/v1/models/german-credit/adverse-action/batch", "text/csv", None, 401),
        ("/v1/models", "multipart/form-data; boundary=x", None, 401),
        ("/v1/models", "multipart/form-data; boundary=x", "officer-key", 403),
    ],
)
def test_a_refused_key_is_answered_before_the_body_is_sent(
    keyed_server: ServerProcess, path: str, content_type: str, key: str | None, status: int
) -> None:
    """The body is declared at 900 KB but only 1 KB of it is ever sent: the answer can only
    come before the body was read (it used to wait for, and parse, all of it)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {900 * 1024}\r\n" + (f"Authorization: Bearer {key}\r\n" if key else "")
    )
    seconds, status_line = _first_answer(keyed_server.url, head, b"{" * 1024)
    assert status_line.startswith(f"HTTP/1.1 {status} "), status_line
    assert seconds < 5


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b" " * min(size, total - start)


def test_a_chunked_body_over_the_limit_is_413(keyed_server: ServerProcess) -> None:
    officer = {"Authorization": "Bearer officer-key", "content-type": "application/json"}
    response = httpx.post(
        f"{keyed_server.url}/v1/models/german-credit/explain",
        content=_chunks(MAX_BODY + 1),  # no Content-Length: counted as it streams
        headers=officer,
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == f"request body exceeds the limit of {MAX_BODY} bytes"
    declared = httpx.post(
        f"{keyed_server.url}/v1/models/german-credit/explain",
        content=b" " * (MAX_BODY + 1),
        headers=officer,
        timeout=60,
    )
    assert declared.status_code == 413


def test_an_upload_over_its_limit_is_413_while_it_streams(keyed_server: ServerProcess) -> None:
    boundary = "limit"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; '
        f'filename="model.skops"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()

    def upload() -> Iterator[bytes]:
        yield head
        yield from _chunks(MAX_UPLOAD + 1)

    response = httpx.post(
        f"{keyed_server.url}/v1/models",
        content=upload(),
        headers={
            "Authorization": "Bearer admin-key",
            "content-type": f"multipart/form-data; boundary={boundary}",
        },
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert str(MAX_UPLOAD) in response.json()["detail"]
    # a body under the upload limit but over the JSON limit is not refused for its size
    small = httpx.post(
        f"{keyed_server.url}/v1/models",
        files={"manifest": ("manifest.yaml", b"x" * (MAX_BODY + 10))},
        headers={"Authorization": "Bearer admin-key"},
        timeout=60,
    )
    assert small.status_code == 422, small.text


ODD_AUTHORIZATION = [b"Bearer", b"Basic b2ZmaWNlcjpr", b"Bearer \xff\xfe", b"x" * 8000]


@pytest.mark.parametrize("authorization", ODD_AUTHORIZATION)
def test_odd_authorization_headers_are_401(
    keyed_server: ServerProcess, authorization: bytes
) -> None:
    response = httpx.get(
        f"{keyed_server.url}/v1/models", headers={"Authorization": authorization}, timeout=30
    )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
