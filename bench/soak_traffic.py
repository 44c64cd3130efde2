"""The soak benchmark's traffic: distinct applicants, a seeded mix of request kinds, and an
open-loop driver that sends them at a steady rate and records every outcome.

Applicants are rows of ``data/german_credit.csv`` with their features varied inside the
model's feature schema (read from ``GET /v1/models/{name}``, as a client would): each
numeric feature is scaled by a factor in [0.8, 1.25] with probability 1/2 (always for
``credit_amount``, kept to cents), clipped to its range and rounded when it is an integer;
each categorical or ordinal feature takes another of its categories with probability 0.1.
A digest of every applicant sent is kept, so no two requests carry the same applicant.

Job handles are never computed here: a request answered 202 is followed through the
``location`` the server returned, polled after 50 ms and then 1.5 times later each time, at
most every second (as a client should, not hammering a busy server).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson

KINDS = ("explain", "adverse", "predict", "batch")
POLL_FIRST, POLL_FACTOR, POLL_MAX = 0.05, 1.5, 1.0  # seconds between polls of a 202'd job
REQUEST_TIMEOUT = 180.0
KEEPALIVE_SECONDS = 2.0


class Applicants:
    """Distinct, schema-valid applicants drawn from real rows (seeded)."""

    def __init__(self, base: list[dict[str, Any]], features: list[dict[str, Any]], seed: int):
        self.base, self.features = base, features
        self.rng = np.random.default_rng(seed)
        self.seen: set[bytes] = set()

    def draw(self) -> dict[str, Any]:
        while True:
            row = dict(self.base[int(self.rng.integers(len(self.base)))])
            for feature in self.features:
                name = feature["name"]
                if feature["type"] == "numeric":
                    if name == "credit_amount" or self.rng.random() < 0.5:
                        row[name] = self._scaled(feature, float(row[name]))
                elif self.rng.random() < 0.1:
                    categories = feature["categories"]
                    row[name] = categories[int(self.rng.integers(len(categories)))]
            digest = hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).digest()
            if digest not in self.seen:
                self.seen.add(digest)
                return row

    def _scaled(self, feature: dict[str, Any], value: float) -> float | int:
        low, high = feature.get("range") or (-np.inf, np.inf)
        scaled = min(max(value * float(self.rng.uniform(0.8, 1.25)), low), high)
        if feature.get("integer"):
            return int(min(max(round(scaled), low), high))
        return round(scaled, 2)


@dataclass(frozen=True)
class Planned:
    """One request of the soak: its kind, model, method, path and body."""

    index: int
    kind: str
    model: str
    path: str
    body: dict[str, Any]
    rows: int


class Plan:
    """The seeded sequence of requests: kind by the mix, model alternating at random."""

    def __init__(
        self,
        applicants: dict[str, Applicants],
        mix: dict[str, float],
        batch_rows: int,
        seed: int,
    ) -> None:
        self.applicants, self.batch_rows = applicants, batch_rows
        self.kinds = [k for k in KINDS if mix.get(k, 0) > 0]
        weights = np.array([mix[k] for k in self.kinds], dtype=float)
        self.weights = weights / weights.sum()
        self.models = sorted(applicants)
        self.rng = np.random.default_rng(seed + 1)
        self.batches = 0

    def request(self, index: int) -> Planned:
        kind = self.kinds[int(self.rng.choice(len(self.kinds), p=self.weights))]
        model = self.models[int(self.rng.integers(len(self.models)))]
        draw = self.applicants[model].draw
        base = f"/v1/models/{model}"
        if kind == "explain":
            return Planned(
                index,
                kind,
                model,
                f"{base}/explain",
                {"instances": [draw()], "methods": ["shap"]},
                1,
            )
        if kind == "predict":
            return Planned(index, kind, model, f"{base}/predict", {"instances": [draw()]}, 1)
        if kind == "adverse":
            body = {"applicant": draw(), "application_id": f"SOAK-{index}"}
            return Planned(index, kind, model, f"{base}/adverse-action", body, 1)
        rows = [draw() for _ in range(self.batch_rows)]
        self.batches += 1
        if self.batches % 2:  # batches alternate: explain, adverse-action
            body = {"instances": rows, "methods": ["shap"], "wait": 0}
            return Planned(index, "batch", model, f"{base}/explain", body, len(rows))
        body = {
            "applicants": rows,
            "application_ids": [f"SOAK-{index}-{i}" for i in range(len(rows))],
            "wait": 0,
        }
        return Planned(index, "batch", model, f"{base}/adverse-action/batch", body, len(rows))


@dataclass
class Outcome:
    index: int
    kind: str
    model: str
    scheduled: float  # seconds after the soak started
    started: float
    finished: float
    ok: bool
    status: int = 0
    cache: str | None = None
    error: str | None = None
    accepted: bool = False  # answered 202 and followed to its result

    @property
    def latency(self) -> float:
        return self.finished - self.started


def check(planned: Planned, document: dict[str, Any]) -> str | None:
    """Why a finished response is wrong, or None."""
    if planned.kind == "adverse":
        if "results" in document:  # the job document of a request answered 202
            document = (document["results"] or [{}])[0]
        if document.get("decision") not in ("approved", "denied") or not document.get("receipt_id"):
            return "adverse-action answer without a decision or receipt id"
        return None
    rows = document.get("predictions") if planned.kind == "predict" else document.get("results")
    if not isinstance(rows, list) or len(rows) != planned.rows:
        return f"expected {planned.rows} result rows"
    if planned.kind in ("explain", "batch") and "explanations" in rows[0]:
        if "shap" not in rows[0]["explanations"]:
            return "explanation without shap"
    return None


async def send(http: httpx.AsyncClient, planned: Planned, outcome: Outcome) -> None:
    """Send one request; follow a 202 through the server's location until it finishes."""
    response = await http.post(planned.path, content=orjson.dumps(planned.body))
    outcome.status, outcome.cache = response.status_code, response.headers.get("x-cache")
    if response.status_code == 202:
        outcome.accepted = True
        location, pause = response.json()["location"], POLL_FIRST
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * POLL_FACTOR, POLL_MAX)
            polled = await http.get(location)
            if polled.status_code != 200:
                outcome.status, outcome.error = polled.status_code, polled.text[:300]
                return
            status = polled.json()
            if status["status"] == "succeeded":
                outcome.status = 200
                outcome.error = check(planned, status["result"])
                outcome.ok = outcome.error is None
                return
            if status["status"] in ("failed", "cancelled"):
                outcome.error = f"job {status['status']}: {status.get('error')}"
                return
    if response.status_code != 200:
        outcome.error = response.text[:300]
        return
    outcome.error = check(planned, response.json())
    outcome.ok = outcome.error is None


@dataclass
class Driver:
    """Open loop: request ``i`` is due at ``i / rate`` seconds; at most ``concurrency`` are in
    flight (a request due while all are busy waits, and the wait counts as lag)."""

    url: str
    rate: float
    concurrency: int
    done: int = 0
    start: float = 0.0  # the loop's clock (time.monotonic) when the first request was due

    async def run(
        self, plan: Plan, count: int, first: int = 0, progress: Callable[[int], None] | None = None
    ) -> list[Outcome]:
        # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s)
        # closes them, so that no request goes out on a connection being closed.
        limits = httpx.Limits(
            max_connections=self.concurrency,
            max_keepalive_connections=self.concurrency,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )
        headers = {"content-type": "application/json"}
        gate = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        outcomes: list[Outcome] = []
        async with httpx.AsyncClient(
            base_url=self.url, limits=limits, timeout=REQUEST_TIMEOUT, headers=headers
        ) as http:
            loop = asyncio.get_running_loop()
            start = self.start = loop.time()
            for n in range(count):
                planned = plan.request(first + n)
                delay = start + n / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                outcome = Outcome(
                    planned.index, planned.kind, planned.model, n / self.rate,
                    loop.time() - start, 0.0, False,
                )  # fmt: skip
                outcomes.append(outcome)
                task = loop.create_task(self._one(http, planned, outcome, gate, start))
                pending.add(task)
                task.add_done_callback(pending.discard)
                if progress is not None and n % 500 == 0:
                    progress(n)
            await asyncio.gather(*pending)
        return outcomes

    async def _one(
        self,
        http: httpx.AsyncClient,
        planned: Planned,
        outcome: Outcome,
        gate: asyncio.Semaphore,
        start: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await send(http, planned, outcome)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            outcome.ok, outcome.error = False, f"{type(exc).__name__}: {exc}"
        finally:
            outcome.finished = loop.time() - start
            self.done += 1
            gate.release()
