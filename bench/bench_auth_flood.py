#!/usr/bin/env python
"""What unauthenticated floods cost the gateway: memory, and the latency of a paying client.

Starts the embedded service (``xai-service serve``, one worker process, API keys set) on a
free port with a scratch copy of ``models/``, then:

1. idle: an authorised client sends the same ``POST /v1/models/german-credit/predict``
   (a cache hit after the first) back to back for ``--seconds``; p50/p99 of its latency;
2. flood: the same client again, while ``--attackers`` threads each POST a ``--mb`` MB
   JSON body without an API key to ``/v1/models/german-credit/explain``, over and over,
   for ``--seconds``; the gateway's RSS is sampled every 20 ms (peak reported);
3. the same flood as chunked multipart uploads (no Content-Length) of a model version
   with a ``--mb`` MB artifact to ``POST /v1/models``.

It stops the service at the end (also on error or Ctrl-C) and prints a report; with
``--out`` it also writes it there.

    .venv/bin/python bench/bench_auth_flood.py                   # ~1.5 min
    .venv/bin/python bench/bench_auth_flood.py --out docs/benchmarks/auth_flood.md
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_service import Proc, free_port, stop_all  # noqa: E402

MODEL = "german-credit"
KEY = "bench-key"


def applicant() -> dict[str, Any]:
    row = pd.read_csv(ROOT / "data" / "german_credit.csv", nrows=1).drop(columns="creditability")
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.iloc[0].items()}


def big_body(megabytes: float) -> bytes:
    one = orjson.dumps(applicant())
    count = int(megabytes * 1_000_000 / (len(one) + 1))
    return b'{"instances": [' + b",".join([one] * count) + b"]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Sampler(threading.Thread):
    """The gateway's RSS every 20 ms; ``peak`` in MB."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.process))
            time.sleep(0.02)


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 1e6


def probe(url: str, seconds: float) -> list[float]:
    """Latencies (ms) of back-to-back authorised cache-hit predicts."""
    body = {"instances": [applicant()]}
    headers = {"Authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        assert client.post(f"/v1/models/{MODEL}/predict", json=body).status_code == 200
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = client.post(f"/v1/models/{MODEL}/predict", json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
    return latencies


def multipart(payload: bytes) -> tuple[bytes, str]:
    """A registration upload whose artifact is ``payload``, and its content type."""
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    parts = [
        (b"manifest", b"manifest.yaml", b"name: flood\n"),
        (b"artifact", b"model.skops", payload),
        (b"reference", b"reference.csv", b"a\n1\n"),
    ]
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n%s\r\n"
        % (boundary.encode(), name, filename, data)
        for name, filename, data in parts
    )
    return body + b"--%s--\r\n" % boundary.encode(), f"multipart/form-data; boundary={boundary}"


def attack(
    url: str, path: str, body: bytes, content_type: str, seconds: float, chunked: bool,
    out: list[Any],
) -> None:  # fmt: skip
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            content: Any = _chunks(body) if chunked else body
            try:
                status: Any = client.post(
                    path, content=content, headers={"content-type": content_type}
                ).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            out.append((status, time.perf_counter() - start))


def _chunks(body: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def flood(
    url: str,
    pid: int,
    path: str,
    body: tuple[bytes, str],
    args: argparse.Namespace,
    chunked: bool,
) -> dict[str, Any]:
    sampler = Sampler(pid)
    before = rss_mb(sampler.process)
    cpu_before = sum(sampler.process.cpu_times()[:2])
    sampler.start()
    results: list[Any] = []
    attackers = [
        threading.Thread(target=attack, args=(url, path, *body, args.seconds, chunked, results))
        for _ in range(args.attackers)
    ]
    for thread in attackers:
        thread.start()
    latencies = probe(url, args.seconds)
    for thread in attackers:
        thread.join()
    sampler.running = False
    sampler.join()
    cpu = sum(sampler.process.cpu_times()[:2]) - cpu_before
    time.sleep(1)
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "rss_before": before,
        "rss_peak": sampler.peak,
        "rss_after": rss_mb(sampler.process),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "probes": len(latencies),
        "attacks": len(results),
        "statuses": statuses,
        "attack_median_s": statistics.median(d for _, d in results) if results else None,
        "cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--mb", type=float, default=31.0, help="Size of each attacking body.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of each phase.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the report here.")
    args = parser.parse_args()
    atexit.register(stop_all)
    scratch = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    atexit.register(shutil.rmtree, scratch, True)
    shutil.copytree(ROOT / "models", scratch / "models")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XAI_")}
    env.update(
        XAI_MODELS_DIR=str(scratch / "models"),
        XAI_PORT=str(port),
        XAI_WORKERS="1",
        XAI_API_KEYS=json.dumps({KEY: ["explain"]}),
        XAI_RECEIPTS_PATH=str(scratch / "receipts.sqlite3"),
    )
    gateway = Proc("gateway", [sys.executable, "-m", "service.cli", "serve"], env, scratch / "log")
    deadline = time.monotonic() + 120
    while True:
        gateway.check()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"gateway not ready:\n{gateway.tail()}")
        time.sleep(0.25)
    body = big_body(args.mb)
    upload = multipart(body)
    idle_rss = rss_mb(psutil.Process(gateway.pid))
    idle = probe(url, args.seconds)
    runs = {
        "JSON body with Content-Length to /explain": flood(
            url,
            gateway.pid,
            f"/v1/models/{MODEL}/explain",
            (body, "application/json"),
            args,
            chunked=False,
        ),
        "chunked multipart upload (no Content-Length) to POST /v1/models": flood(
            url, gateway.pid, "/v1/models", upload, args, chunked=True
        ),
    }
    lines = [
        "# Unauthenticated floods: gateway memory and an authorised client's latency",
        "",
        f"Generated by `.venv/bin/python bench/bench_auth_flood.py` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} cores, load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end). The embedded service "
        f"with one worker process and API keys; {args.attackers} attackers each POST "
        f"{len(body) / 1e6:.1f} MB bodies without a key, back to back, for {args.seconds:g} s, "
        "while one authorised client repeats a cached `predict` (its latency below).",
        "",
        f"Idle: gateway RSS {idle_rss:.0f} MB; authorised p50 {statistics.median(idle):.2f} ms, "
        f"p99 {percentile(idle, 0.99):.2f} ms ({len(idle)} requests).",
        "",
        "| flood | gateway RSS before / peak / after (MB) | authorised p50 / p99 / max (ms) "
        "| attacking requests: answers | median time per attack (s) "
        "| gateway CPU in the phase (s, its probes included) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        answers = ", ".join(f"{k} × {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {name} | {r['rss_before']:.0f} / {r['rss_peak']:.0f} / {r['rss_after']:.0f} "
            f"| {r['p50']:.2f} / {r['p99']:.2f} / {r['max']:.1f} | {answers} "
            f"| {r['attack_median_s']:.2f} | {r['cpu_s']:.1f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
