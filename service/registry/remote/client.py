"""Calls to a model server: batched, with bounded concurrency on a pooled HTTP client,
each request under a time-out, failures retried with backoff until the call's deadline.

One :class:`RemoteClient` per remote version in a worker process. Frames larger than
``max_rows_per_call`` are split into requests sent ``max_concurrency`` at a time; the
answers are put back in order. The HTTP client and the thread pool are created lazily
per process (a Celery worker forks after loading its models).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd

from service.registry.remote import policy
from service.registry.remote.codec import Codec, MalformedResponse
from service.registry.remote.errors import RemoteUnavailableError
from service.registry.remote.spec import RemoteArtifact

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 2.0
MIN_ATTEMPT_SECONDS = 0.25  # no new attempt with less time left than this (or timeout_s)
MAX_DETAIL = 300


@dataclass
class CallStats:
    """What this process sent to the endpoint (for benchmarks and the model's status)."""

    requests: int = 0  # answered requests
    rows: int = 0  # rows in them
    retries: int = 0
    codec_seconds: float = 0.0  # encoding requests and decoding answers, summed over threads


class _Fatal(Exception):
    """A failure that retrying cannot fix (e.g. 404, 422, missing credentials)."""


class RemoteClient:
    def __init__(
        self,
        artifact: RemoteArtifact,
        codec: Codec,
        check: Callable[[np.ndarray], None],
        retry_seconds: float | None = None,
    ) -> None:
        """``check`` refuses (MalformedResponse) a decoded answer of the wrong form."""
        self.artifact, self.codec, self.check = artifact, codec, check
        self.retry_seconds = retry_seconds
        self.stats = CallStats()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._http: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The endpoint's outputs for every row of ``frame`` (rows x columns)."""
        failure = policy.task_failure()
        if failure is not None:
            raise failure  # the endpoint already failed in this task
        size = self.artifact.max_rows_per_call
        if len(frame) <= size:
            return self._call(frame)
        parts = [frame.iloc[i : i + size] for i in range(0, len(frame), size)]
        self._ensure()
        assert self._pool is not None
        answers = list(self._pool.map(self._call, parts))
        widths = {a.shape[1] for a in answers}
        if len(widths) != 1:
            self._fail(f"malformed answer: requests gave {sorted(widths)} output columns", 0, 0)
        return np.vstack(answers)

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._http is not None:
                self._http.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
        self._http = self._pool = self._pid = None

    # --- one request, retried
    def _call(self, frame: pd.DataFrame) -> np.ndarray:
        encoding = time.perf_counter()
        body = self.codec.encode(frame)
        self._count_codec(time.perf_counter() - encoding)
        http = self._ensure()
        started = time.monotonic()
        deadline = policy.call_deadline(self.retry_seconds)
        attempts, delay, last = 0, FIRST_BACKOFF, "no attempt was made"
        shortest = min(self.artifact.timeout_s, MIN_ATTEMPT_SECONDS)
        while True:
            remaining = deadline - time.monotonic()
            if remaining < (shortest if attempts else 0.01):
                break
            sibling = policy.task_failure()
            if attempts and sibling is not None:
                raise sibling  # another request of this call (or task) already gave up
            attempts += 1
            timeout = min(self.artifact.timeout_s, remaining)
            try:
                return self._attempt(http, body, len(frame), timeout)
            except _Fatal as exc:
                self._fail(str(exc), attempts, time.monotonic() - started)
            except (httpx.TransportError, MalformedResponse, _Retryable) as exc:
                cut_short = (
                    isinstance(exc, httpx.TimeoutException) and timeout < self.artifact.timeout_s
                )
                if not (cut_short and attempts > 1):  # keep the reason the deadline hid
                    last = _describe(exc)
            self.stats.retries += 1
            pause = min(delay, MAX_BACKOFF) * random.uniform(0.5, 1.0)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            delay *= 2
        if not attempts:
            last = "the task's time limit left no time to call it"
        self._fail(last, attempts, time.monotonic() - started)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, http: httpx.Client, body: bytes, rows: int, timeout: float) -> np.ndarray:
        response = http.post(
            self.codec.path, content=body, headers=self._headers(), timeout=timeout
        )
        if response.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code}: {_detail(response)}")
        if response.status_code != 200:
            raise _Fatal(f"HTTP {response.status_code}: {_detail(response)}")
        decoding = time.perf_counter()
        values = self.codec.decode(response.content, rows)
        self._count_codec(time.perf_counter() - decoding)
        self.check(values)
        with self._lock:
            self.stats.requests += 1
            self.stats.rows += rows
        return values

    def _count_codec(self, seconds: float) -> None:
        with self._lock:
            self.stats.codec_seconds += seconds

    def _headers(self) -> dict[str, str]:
        # Uncompressed answers: MLServer gzips a large one by default, which cost more than
        # its predict (12,000 rows: 165 -> 112 ms a call on loopback, docs/benchmarks.md).
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        name = self.artifact.auth_env
        if name is not None:
            value = os.environ.get(name)
            if not value:
                raise _Fatal(
                    f"the environment variable {name} named by artifact.auth_env is not set "
                    "in the worker"
                )
            headers["authorization"] = value
        return headers

    def _fail(self, reason: str, attempts: int, elapsed: float) -> None:
        plural = "s" * (attempts != 1)
        tried = f" ({attempts} attempt{plural} in {elapsed:.1f} s)" if attempts else ""
        error = RemoteUnavailableError(
            f"model endpoint {self.artifact.endpoint} failed: {reason}{tried}"
        )
        policy.record_failure(error)
        raise error

    def _ensure(self) -> httpx.Client:
        pid = os.getpid()
        with self._lock:
            if self._pid != pid or self._http is None:
                limit = self.artifact.max_concurrency
                self._http = httpx.Client(
                    limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                    follow_redirects=False,
                )
                self._pool = ThreadPoolExecutor(limit, thread_name_prefix="remote-model")
                self._pid = pid
            return self._http


class _Retryable(Exception):
    """An answer worth retrying (5xx, 429, 408)."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({_first_line(exc) or 'refused'})"
    if isinstance(exc, httpx.TransportError):
        return f"{type(exc).__name__}: {_first_line(exc)}"
    if isinstance(exc, MalformedResponse):
        return f"malformed answer: {exc}"
    return str(exc)


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > MAX_DETAIL:
        return text[:MAX_DETAIL] + "..."
    return text or response.reason_phrase


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""
