"""A small model server for the tests: a real HTTP server on a loopback port, in a thread,
answering KServe v1 (``/v1/models/{name}:predict``) and Open Inference Protocol V2
(``/v2/models/{name}/infer``) requests with a real scikit-learn pipeline, and able to
misbehave on request (errors, slowness, malformed or wrongly shaped answers)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

FAULTS = ("500", "503", "404", "slow", "garbage", "short", "wide", "nan", "labels")


class StubServer:
    def __init__(self, model: Any, name: str) -> None:
        self.model, self.name = model, name
        self.faults: deque[str] = deque()
        self.always: str | None = None  # a fault for every request
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.slow_seconds = 2.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[StubServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        fault = self.always or (self.faults.popleft() if self.faults else None)
        if fault in ("500", "503", "404"):
            return int(fault), b'{"error": "injected failure"}'
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if fault == "garbage":
            return 200, b"<html>not json"
        if path == f"/v1/models/{self.name}:predict":
            frame = pd.DataFrame(body["instances"])
            values = self._values(frame, fault)
            return 200, json.dumps({"predictions": values.tolist()}).encode()
        if path == f"/v2/models/{self.name}/infer":
            frame = pd.DataFrame({i["name"]: i["data"] for i in body["inputs"]})
            values = self._values(frame, fault)
            if fault == "labels":
                labels = self.model.predict(frame).tolist()
                output = {"name": "predict", "shape": [len(labels)], "datatype": "BYTES"}
                return 200, json.dumps({"outputs": [output | {"data": labels}]}).encode()
            output = {"name": "predict_proba", "shape": list(values.shape), "datatype": "FP64"}
            document = {
                "model_name": self.name,
                "outputs": [output | {"data": values.ravel().tolist()}],
            }
            return 200, json.dumps(document).encode()
        return 404, b'{"error": "no such model"}'

    def _values(self, frame: pd.DataFrame, fault: str | None) -> np.ndarray:
        values = np.asarray(self.model.predict_proba(frame), dtype=float)
        if fault == "short":
            return values[:-1]
        if fault == "wide":
            return np.column_stack([values, values])
        if fault == "nan":
            values[0, 0] = np.nan
        return values

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                stub.requests.append(body)
                stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, content = stub.answer(self.path, body)
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a time-out under test)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
