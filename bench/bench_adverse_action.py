#!/usr/bin/env python
"""Benchmark of adverse-action decisions (reasons + recourse) over HTTP against the
libraries called directly.

One run starts the embedded service (``xai-service serve``, its default 2 worker
processes) on a free port, with a scratch copy of ``models/`` and a temporary
``XAI_RECEIPTS_PATH``, measures, stops it (also on error or Ctrl-C) and prints a report; a
full run also writes ``docs/benchmarks/adverse_action.md`` and its section of
``docs/benchmarks.md``.

    .venv/bin/python bench/bench_adverse_action.py           # full run (~6-8 min on 2 cores)
    .venv/bin/python bench/bench_adverse_action.py --quick   # smaller run, prints only

Model ``german-credit`` (gradient-boosted trees), applicants from ``data/german_credit.csv``.
Measured, each round interleaving the three ways applicant by applicant:

1. single call: ``POST /v1/models/german-credit/adverse-action`` for ``--requests``
   distinct applicants the model denies (evenly spaced over all denied ones), sequential
   on one keep-alive httpx client, each a cache miss (``options.seed`` changes per round);
   the same for approved applicants (no recourse search); cache hits (a round's first
   request repeated); p50 and p99 per round, the median over ``--rounds`` rounds;
2. the same work with the libraries called directly in this process: ``predict_proba``
   of the pipeline, ``shap.TreeExplainer`` (interventional, background = the reference
   rows the model approves, ``model_output="raw"``, on the estimator after the
   pipeline's encoder) and, for a denial, ``dice_ml`` random search for 3
   counterfactuals with the service's constraints and the service's first DiCE seed
   (``bench_counterfactual.direct_dice`` / ``direct_counterfactuals``); and the worker's
   task function (``service.worker.run_task``) in this process, which splits the
   service's overhead into the worker's own extra work and HTTP + queue;
3. batch notices: ``POST /v1/models/german-credit/adverse-action/batch`` with
   ``--batch-rows`` applicants (``"wait": 0``), polled on ``GET /v1/jobs/{id}`` until
   succeeded (the result included), ``--batch-runs`` runs with their own seeds, against
   the direct-library loop over the same applicants in one process.
"""

from __future__ import annotations

import os

# Children get the untouched environment; this process computes on one thread only
# (as the service's workers do).
BASE_ENV = dict(os.environ)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import atexit  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_counterfactual import direct_counterfactuals, direct_dice  # noqa: E402
from bench_service import Proc, children, cpu_seconds, free_port, stop_all  # noqa: E402

from service.explainers.counterfactual import (  # noqa: E402
    CounterfactualExplainer,
    CounterfactualOptions,
    _sub_seed,
)
from service.gateway.dataplane import DataPlane  # noqa: E402
from service.jobs.keys import row_seed  # noqa: E402
from service.jobs.spec import TaskKind  # noqa: E402
from service.registry.loaded import LoadedModel  # noqa: E402
from service.registry.schema import validate_instance  # noqa: E402
from service.registry.store import ModelStore  # noqa: E402
from service.settings import Settings  # noqa: E402

MODEL = "german-credit"
DATA = ROOT / "data" / "german_credit.csv"
REPORT = Path("docs/benchmarks/adverse_action.md")
INDEX = Path("docs/benchmarks.md")
SECTION_START = "<!-- bench_adverse_action: start (written by bench/bench_adverse_action.py) -->"
SECTION_END = "<!-- bench_adverse_action: end -->"
JSON = {"content-type": "application/json"}
HEADER_FIELDS = ("model", "version", "content_hash", "job_id")
RECOURSE = {"count": 3, "method": "random", "time_budget": 5.0}  # the service's defaults
VERSIONS = (
    "shap", "dice-ml", "scikit-learn", "numpy", "pandas", "fastapi", "starlette", "uvicorn",
    "pydantic", "httpx", "orjson", "threadpoolctl",
)  # fmt: skip
KINDS = ("denied", "approved")
FINISHED = ("succeeded", "failed", "cancelled")
WAYS = ("service", "task", "direct")


# --------------------------------------------------------------------------- data
def applicants() -> list[dict[str, Any]]:
    frame = pd.read_csv(DATA).drop(columns="creditability")
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def spread(indices: np.ndarray, n: int) -> list[int]:
    """n of ``indices`` evenly spaced over all of them (a sample representative of the
    data set, not its first rows)."""
    if n > len(indices):
        raise SystemExit(f"--requests {n}: only {len(indices)} such applicants in {DATA.name}")
    return [int(indices[j]) for j in np.linspace(0, len(indices) - 1, n).round().astype(int)]


# --------------------------------------------------------------------------- direct
class Direct:
    """The libraries called directly on the scikit-learn pipeline: ``predict_proba``,
    ``shap.TreeExplainer`` against the approved reference rows, and dice-ml as
    ``bench_counterfactual.py`` calls it (same DiCE data, constraints and method)."""

    def __init__(self, model: LoadedModel) -> None:
        import shap

        self.model = model
        self.threshold = model.manifest.decision_threshold
        self.pipeline = pipeline = model.predictor.model
        self.transform, estimator = pipeline[:-1].transform, pipeline[-1]
        reference = model.reference
        approved = pipeline.predict_proba(reference)[:, 1] >= self.threshold
        design = np.asarray(self.transform(reference[approved]), dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.explainer = shap.TreeExplainer(
                estimator,
                data=shap.maskers.Independent(design, max_samples=design.shape[0]),
                feature_perturbation="interventional",
                model_output="raw",
            )
        self.background_rows = design.shape[0]
        self.base_value = float(np.ravel(self.explainer.expected_value)[-1])
        options = CounterfactualOptions(**RECOURSE)  # type: ignore[arg-type]
        self.ours = CounterfactualExplainer(model, options)  # setup only, never timed
        self.dice = direct_dice(self.ours, pipeline)

    def decide(self, row: pd.DataFrame, seed: int) -> dict[str, Any]:
        """One applicant (a one-row typed frame); ``seed`` is the row seed the service
        gives it, so DiCE draws what the service's first search draws."""
        probability = float(self.pipeline.predict_proba(row)[0, 1])
        design = np.asarray(self.transform(row), dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.asarray(self.explainer.shap_values(design, check_additivity=False))
        denied = probability < self.threshold
        found = (
            direct_counterfactuals(self.dice, self.ours, row, _sub_seed(seed, 1)) if denied else []
        )
        return {"denied": denied, "shap": values, "counterfactuals": len(found)}


class InProcessTask:
    """The service's worker task (``service.worker.run_task``) called in this process:
    the worker's work without HTTP, queue or process hop; receipts to a scratch file."""

    def __init__(self, models_dir: Path, receipts: Path, model: LoadedModel) -> None:
        from service import worker

        self.run_task = worker.run_task
        self.models_dir, self.model = models_dir, model
        self.receipts = f"sqlite://{receipts.resolve()}"

    def spec(self, instance: dict[str, Any], seed: int, tag: str) -> dict[str, Any]:
        version = self.model.version
        job = hashlib.sha256(f"in-process:{tag}:{seed}".encode()).hexdigest()
        return {
            "kind": TaskKind.adverse_action,
            "models_dir": str(self.models_dir),
            "model": version.name,
            "version": version.version_id,
            "instances": [instance],
            "methods": [],
            "options": {"adverse_action": {"seed": seed}},
            "seed": seed,
            "offset": 0,
            "job_id": job,
            "content_key": job,
            "tenant": "bench",
            "receipts": self.receipts,
            "receipt_retention": None,
            "application_ids": [None],
            "receipt_ids": [f"rcpt_{job[:32]}"],
        }

    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = self.run_task(spec)  # type: ignore[arg-type]
        if "results" not in out:
            raise RuntimeError(f"in-process task failed: {out}")
        return out["results"][0]


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """A decision document without what names the job (header, receipt id, notice)."""
    return {k: v for k, v in document.items() if k not in (*HEADER_FIELDS, "receipt_id", "notice")}


# --------------------------------------------------------------------------- service
class Service:
    """``xai-service serve`` (embedded mode, default worker count) started by this script."""

    def __init__(self, folder: Path, models_dir: Path) -> None:
        self.folder, self.models_dir = folder, models_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.receipts = folder / "receipts.sqlite3"
        self.proc: Proc | None = None

    def start(self) -> None:
        env = {k: v for k, v in BASE_ENV.items() if not k.startswith("XAI_")}
        env.update(
            XAI_MODELS_DIR=str(self.models_dir),
            XAI_HOST="127.0.0.1",
            XAI_PORT=str(self.port),
            XAI_RECEIPTS_PATH=str(self.receipts),
            PYTHONUNBUFFERED="1",
        )
        script = Path(sys.executable).parent / "xai-service"
        argv = [str(script), "serve"]
        if not script.exists():
            argv = [sys.executable, "-m", "service.cli", "serve"]
        self.argv = argv
        self.proc = Proc("xai-service serve", argv, env, self.folder / "service.log")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            self.proc.check()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"service not ready in 180 s:\n{self.proc.tail()}")

    def worker_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each child process (the workers, the resource tracker)."""
        assert self.proc is not None
        return {pid: cpu_seconds(pid) for pid in children(self.proc.pid)}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the gateway process and of its worker processes."""
        assert self.proc is not None
        return {
            "gateway": cpu_seconds(self.proc.pid),
            "workers": sum(cpu_seconds(pid) for pid in children(self.proc.pid)),
        }


def decide_body(applicant: dict[str, Any], seed: int) -> bytes:
    return orjson.dumps({"applicant": applicant, "options": {"seed": seed}, "wait": 60})


def post_decision(http: httpx.Client, body: bytes, expect: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = http.post(f"/v1/models/{MODEL}/adverse-action", content=body, headers=JSON)
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or response.headers.get("x-cache") != expect:
        raise RuntimeError(
            f"expected a 200 {expect}, got {response.status_code} "
            f"(X-Cache {response.headers.get('x-cache')}): {response.text[:500]}"
        )
    return elapsed, response


def warm_service(url: str, rows: list[dict[str, Any]], seed: int) -> None:
    """Concurrent requests with this round's seed so that both workers build the engine
    for its options before the timed requests (the worker caches one engine per distinct
    options, and ``options.seed`` is one of them; see the report)."""
    errors: list[str] = []

    def one(row: dict[str, Any]) -> None:
        response = httpx.post(
            f"{url}/v1/models/{MODEL}/adverse-action", content=decide_body(row, seed),
            headers=JSON, timeout=90,
        )  # fmt: skip
        if response.status_code != 200:
            errors.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=one, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"warm-up failed: {errors}")


# --------------------------------------------------------------------------- measurements
def pcts(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(np.mean(ms)),
        "n": float(len(ms)),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def single_rounds(
    args: argparse.Namespace,
    service: Service,
    direct: Direct,
    task: InProcessTask,
    pool: list[dict[str, Any]],
    instances: list[dict[str, Any]],
    frame: pd.DataFrame,
    picks: dict[str, list[int]],
    warmers: dict[str, list[int]],
    say: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rounds": [], "checks": {"same_as_task": 0, "compared": 0, "base_value_error": 0.0,
                                 "decision_mismatch": 0, "recourse_found": 0, "direct_found": 0},
        "engine_rebuild_ms": [], "workers_warmed": [],
    }  # fmt: skip
    checks = out["checks"]
    with httpx.Client(base_url=service.url, timeout=120) as http:
        for round_ in range(args.rounds):
            seed = args.seed + round_
            # a new options.seed: both workers (and the in-process task) build its engine
            # now, outside the timed requests
            before = service.worker_cpu()
            warm_service(service.url, [pool[i] for i in warmers["denied"][:2]], seed)
            after = service.worker_cpu()
            busy = sum(after[pid] - before.get(pid, 0.0) > 0.05 for pid in after)
            out["workers_warmed"].append(busy)
            spec = task.spec(instances[warmers["denied"][2]], seed, "warm")
            first = time.perf_counter()
            task(spec)
            second = time.perf_counter()
            task(spec)  # the same work with the engine cached
            out["engine_rebuild_ms"].append((2 * second - first - time.perf_counter()) * 1000)
            times: dict[tuple[str, str], list[float]] = {(k, w): [] for k in KINDS for w in WAYS}
            cpu = {f"{w}_{k}": 0.0 for w in ("direct", "task") for k in KINDS}
            service_cpu = {k: {"gateway": 0.0, "workers": 0.0} for k in KINDS}
            first_body: bytes | None = None
            first_response: bytes | None = None
            for kind in KINDS:
                for i in picks[kind]:
                    row = frame.iloc[[i]].reset_index(drop=True)
                    # direct libraries
                    wall, clock = time.perf_counter(), time.process_time()
                    found = direct.decide(row, row_seed(seed, 0))
                    times[kind, "direct"].append(time.perf_counter() - wall)
                    cpu[f"direct_{kind}"] += time.process_time() - clock
                    # the worker's task in this process
                    spec = task.spec(instances[i], seed, str(i))
                    wall, clock = time.perf_counter(), time.process_time()
                    document = task(spec)
                    times[kind, "task"].append(time.perf_counter() - wall)
                    cpu[f"task_{kind}"] += time.process_time() - clock
                    # the service over HTTP
                    body = decide_body(pool[i], seed)
                    before = service.cpu()
                    elapsed, response = post_decision(http, body, "miss")
                    after = service.cpu()
                    times[kind, "service"].append(elapsed)
                    for part in before:
                        service_cpu[kind][part] += after[part] - before[part]
                    served = orjson.loads(response.content)
                    if first_body is None:
                        first_body, first_response = body, response.content
                    # the same work three ways?
                    checks["compared"] += 1
                    checks["same_as_task"] += comparable(served) == comparable(document)
                    expected = kind == "denied"
                    checks["decision_mismatch"] += (
                        served["decision"] == "denied"
                    ) != expected or found["denied"] != expected
                    checks["base_value_error"] = max(
                        checks["base_value_error"],
                        abs(served["attribution"]["base_value"] - direct.base_value),
                    )
                    if kind == "denied":
                        checks["recourse_found"] += bool((served["recourse"] or {}).get("options"))
                        checks["direct_found"] += bool(found["counterfactuals"])
            # cache hits: the round's first request, repeated
            assert first_body is not None
            hits = []
            for _ in range(args.requests):
                elapsed, response = post_decision(http, first_body, "hit")
                if response.content != first_response:
                    raise RuntimeError("a cache hit returned different bytes")
                hits.append(elapsed)
            n = args.requests
            record = {
                **{f"{w}_{k}": pcts(times[k, w]) for k in KINDS for w in WAYS},
                "hit": pcts(hits),
                "paired_denied_ms": float(
                    np.median(
                        (np.array(times["denied", "service"]) - times["denied", "direct"]) * 1000
                    )
                ),
                **{
                    f"{key.split('_')[0]}_cpu_{key.split('_')[1]}_ms": value / n * 1000
                    for key, value in cpu.items()
                },  # fmt: skip
                **{
                    f"service_cpu_{k}_{part}_ms": service_cpu[k][part] / n * 1000
                    for k in KINDS
                    for part in ("gateway", "workers")
                },
                "loadavg": loadavg(),
            }
            out["rounds"].append(record)
            say(
                f"  round {round_ + 1}: denied p50 service {record['service_denied']['p50']:.0f} "
                f"/ task {record['task_denied']['p50']:.0f} / direct "
                f"{record['direct_denied']['p50']:.0f} ms; approved p50 service "
                f"{record['service_approved']['p50']:.1f} / direct "
                f"{record['direct_approved']['p50']:.1f} ms; hit p50 "
                f"{record['hit']['p50']:.2f} ms; load {record['loadavg']}"
            )
    return out


def direct_loop(direct: Direct, frame: pd.DataFrame, seed: int) -> dict[str, float]:
    """The direct libraries over every batch applicant, one after the other, seeded as the
    service seeds them (row i gets ``row_seed(seed, i)``)."""
    wall, clock = time.perf_counter(), time.process_time()
    denied = 0
    for i in range(len(frame)):
        denied += direct.decide(frame.iloc[[i]].reset_index(drop=True), row_seed(seed, i))["denied"]
    seconds = time.perf_counter() - wall
    return {
        "seconds": seconds,
        "cpu_s": time.process_time() - clock,
        "denied": float(denied),
        "decisions_per_s": len(frame) / seconds,
        "denials_per_s": denied / seconds,
    }


_FORKED: tuple[Direct, pd.DataFrame, int] | None = None


def _loop_slice(bounds: tuple[int, int]) -> tuple[int, float]:
    """Denials and CPU seconds of the direct loop over one slice (in a forked child)."""
    assert _FORKED is not None
    direct, frame, seed = _FORKED
    clock = time.process_time()
    denied = sum(
        bool(direct.decide(frame.iloc[[i]].reset_index(drop=True), row_seed(seed, i))["denied"])
        for i in range(*bounds)
    )
    return denied, time.process_time() - clock


def direct_loop_two(direct: Direct, frame: pd.DataFrame, seed: int) -> dict[str, float]:
    """What two processes can do on this machine now: the direct loop in 2 forked
    processes, half of the applicants each (pool started before the clock)."""
    import multiprocessing

    global _FORKED
    _FORKED = (direct, frame, seed)
    half = len(frame) // 2
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(abs, [0, 1], chunksize=1)
            start = time.perf_counter()
            parts = pool.map(_loop_slice, [(0, half), (half, len(frame))], chunksize=1)
            seconds = time.perf_counter() - start
    finally:
        _FORKED = None
    return {
        "seconds": seconds,
        "denied": float(sum(d for d, _ in parts)),
        "cpu_s": float(sum(c for _, c in parts)),
        "decisions_per_s": len(frame) / seconds,
    }


def service_batch(
    service: Service, rows: list[dict[str, Any]], seed: int, poll: float
) -> dict[str, float]:
    """Submit → succeeded (result included) of one batch job."""
    body = orjson.dumps({"applicants": rows, "options": {"seed": seed}, "wait": 0})
    with httpx.Client(base_url=service.url, timeout=600) as http:
        cpu_before = service.cpu()
        start = time.perf_counter()
        accepted = http.post(f"/v1/models/{MODEL}/adverse-action/batch", content=body, headers=JSON)
        submitted = time.perf_counter()
        if accepted.status_code != 202:
            raise RuntimeError(f"expected 202, got {accepted.status_code}: {accepted.text[:500]}")
        job_id = accepted.json()["job_id"]
        while True:
            response = http.get(f"/v1/jobs/{job_id}")
            done = time.perf_counter()
            if response.status_code != 200:
                raise RuntimeError(f"job status {response.status_code}: {response.text[:500]}")
            head = response.content[:400]
            if any(f'"status":"{s}"'.encode() in head for s in FINISHED):
                break
            if done - start > 900:
                raise RuntimeError("batch job not finished after 900 s")
            time.sleep(poll)
        cpu_after = service.cpu()
        status = orjson.loads(response.content)
        results = (status.get("result") or {}).get("results") or []
        if status["status"] != "succeeded" or len(results) != len(rows):
            raise RuntimeError(f"batch job did not succeed: {str(status)[:500]}")
        denied = sum(r["decision"] == "denied" for r in results)
        receipts = len({r["receipt_id"] for r in results})
        notices_start = time.perf_counter()
        notices = http.get(f"/v1/jobs/{job_id}/result", params={"format": "notices"})
        notices_s = time.perf_counter() - notices_start
        texts = [t for t in notices.text.split("\f\n") if t.strip()]
        if notices.status_code != 200 or len(texts) != denied or receipts != len(rows):
            raise RuntimeError(
                f"notices {notices.status_code}: {len(texts)} notices for {denied} denials, "
                f"{receipts} receipts for {len(rows)} applicants"
            )
    seconds = done - start
    return {
        "seconds": seconds,
        "submit_s": submitted - start,
        "workers_s": float(status["finished_at"] - status["created_at"]),
        "denied": float(denied),
        "with_recourse": float(sum(bool((r["recourse"] or {}).get("options")) for r in results)),
        "decisions_per_s": len(rows) / seconds,
        "denials_per_s": denied / seconds,
        "notices_s": notices_s,
        "gateway_cpu_s": cpu_after["gateway"] - cpu_before["gateway"],
        "workers_cpu_s": cpu_after["workers"] - cpu_before["workers"],
    }


def components(
    model: LoadedModel, frame: pd.DataFrame, picks: list[int], folder: Path
) -> dict[str, float]:
    """Parts of the worker's extra work, timed alone in this process on the denied picks
    (median ms): the fairness probe, and writing one receipt to SQLite."""
    from service.adverse.fairness import fairness_probe
    from service.receipts.store import SqliteReceipts

    probe, write = [], []
    store = SqliteReceipts(folder / "receipts-components.sqlite3")
    store.put_many([{"receipt_id": "warm", "version": "v", "issued_at": 0.0, "body": "x"}])
    for i in picks:
        row = frame.iloc[[i]].reset_index(drop=True)
        start = time.perf_counter()
        fairness_probe(model, row, False)
        probe.append(time.perf_counter() - start)
        receipt = {"receipt_id": f"r{i}", "version": "v", "issued_at": time.time(),
                   "response": {"payload": "x" * 4000}}  # fmt: skip
        start = time.perf_counter()
        store.put_many([receipt])
        write.append(time.perf_counter() - start)
    return {
        "fairness_probe_ms": float(np.median(probe)) * 1000,
        "receipt_write_ms": float(np.median(write)) * 1000,
    }


# --------------------------------------------------------------------------- facts
def command_output(argv: list[str]) -> str:
    # BASE_ENV: nproc would report OMP_NUM_THREADS (set to 1 in this process)
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=10, env=BASE_ENV
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_facts(folder: Path) -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory = next((x.split()[1] for x in meminfo if x.startswith("MemTotal")), "0")
    return {
        "nproc": command_output(["nproc"]),
        "cpu": cpu,
        "memory_gb": f"{int(memory) / 1024**2:.1f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tmp_fs": filesystem(folder),
        "repo_fs": filesystem(ROOT),
        "loadavg_start": loadavg(),
    }


def filesystem(path: Path) -> str:
    lines = command_output(["df", "--output=fstype,target", str(path)]).splitlines()
    return " on ".join(lines[-1].split()) if len(lines) > 1 else "?"


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


# --------------------------------------------------------------------------- report
def med(values: list[float]) -> float:
    return float(np.median(values))


def runs(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def summary(r: dict[str, Any]) -> dict[str, float]:
    """The headline figures: medians over rounds / runs."""
    rounds = r["single"]["rounds"]
    s: dict[str, float] = {}
    for key in (*(f"{w}_{k}" for k in KINDS for w in WAYS), "hit"):
        for stat in ("p50", "p99", "mean"):
            s[f"{key}_{stat}"] = med([x[key][stat] for x in rounds])
    for key in rounds[0]:
        if key.endswith("_ms") and not isinstance(rounds[0][key], dict):
            s[key] = med([x[key] for x in rounds])
    batch, loop = r["batch"], r["direct_loop"]
    for key in batch[0]:
        s[f"batch_{key}"] = med([x[key] for x in batch])
    for key in loop[0]:
        s[f"loop_{key}"] = med([x[key] for x in loop])
    for key in r["direct_loop_two"][0]:
        s[f"two_{key}"] = med([x[key] for x in r["direct_loop_two"]])
    return s


def report(args: argparse.Namespace, r: dict[str, Any], facts: dict[str, str]) -> str:
    s = summary(r)
    rounds, checks = r["single"]["rounds"], r["single"]["checks"]
    n, rows = args.requests, args.batch_rows
    lines: list[str] = []
    add = lines.append

    def row3(label: str, kind: str, stat: str) -> str:
        sv, tv, dv = (s[f"{w}_{kind}_{stat}"] for w in WAYS)
        return (f"| {label} | {sv:.1f} | {tv:.1f} | {dv:.1f} | {sv - dv:+.1f} | "
                f"{sv / dv:.2f}x | {sv - tv:+.1f} |")  # fmt: skip

    add("# Adverse-action decisions over HTTP vs the libraries called directly")
    add("")
    add(f"- date: {r['date']}; the whole run took {r['runtime_s'] / 60:.1f} min")
    add(f"- command: `{r['command']}`")
    add(f"- machine: `nproc` {facts['nproc']}, {facts['cpu']}, {facts['memory_gb']} GB, "
        f"kernel {facts['kernel']}, Python {facts['python']}; shared with other work during "
        f"the run")  # fmt: skip
    add(f"- load average (1 / 5 / 15 min): before {facts['loadavg_start']}; after each "
        f"latency round {'; '.join(x['loadavg'] for x in rounds)}; after each batch run "
        f"{'; '.join(r['batch_load'])}; at the end {r['loadavg_end']}")  # fmt: skip
    add("- packages: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    add(f"- service: `{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(r['argv']))}` "
        f"(embedded mode, {r['workers']} worker processes, chunk size "
        f"{r['chunk_size']} for these jobs) on 127.0.0.1, a scratch copy of `models/`, "
        f"`XAI_RECEIPTS_PATH` in a temporary folder ({facts['tmp_fs']}, the same file system "
        f"type as the repository: {facts['repo_fs']}); the client, the service and the direct "
        f"calls share the machine's {facts['nproc']} cores")  # fmt: skip
    add(f"- model `{MODEL}` (scikit-learn gradient boosting behind an ordinal encoder), "
        f"version `{r['version']}`; default options (at most 4 reasons against the approved "
        f"reference rows, recourse: DiCE random search for 3 options, 5 s budget)")  # fmt: skip
    add("")
    add("## Single call")
    add("")
    add(f"{n} distinct denied applicants and {n} distinct approved ones (evenly spaced over "
        f"the {r['denied_total']} denied and {1000 - r['denied_total']} approved applicants of "
        f"`data/german_credit.csv`) per round, {args.rounds} rounds; each request a cache miss "
        f"(`options.seed` = {args.seed} + round); sequential requests on one keep-alive httpx "
        f"client, `\"wait\": 60`. Applicant by applicant the three ways run back to back, so "
        f"machine noise hits all three alike. Figures: p50 / p99 of one round, then the median "
        f"over rounds (with {n} requests a round's p99 lies between its two slowest).")  # fmt: skip
    add("")
    add(
        "- **service**: `POST /v1/models/german-credit/adverse-action` over HTTP "
        "(validation, content key, queue, worker process, decision, receipt, response);"
    )
    add(
        "- **worker task**: `service.worker.run_task` with the same spec in the benchmark "
        "process (the worker's whole job, no HTTP, queue or process hop);"
    )
    add(f"- **direct**: the libraries called directly in the benchmark process: the pipeline's "
        f"`predict_proba`; `shap.TreeExplainer(model[-1], data=Independent(design, "
        f"max_samples={r['background_rows']}), feature_perturbation='interventional', "
        f"model_output='raw').shap_values` on the encoded applicant, the background being the "
        f"{r['background_rows']} reference rows the model approves (the policy baseline); "
        f"for a denial, `dice_ml` random search for 3 counterfactuals on the pipeline with the "
        f"service's constraints (`bench_counterfactual.direct_counterfactuals`), seeded with "
        f"the service's first DiCE seed so both draw the same samples.")  # fmt: skip
    add("")
    add("| ms | service | worker task | direct | service − direct | service ÷ direct | "
        "service − worker task (HTTP + queue) |")  # fmt: skip
    add("|---|---:|---:|---:|---:|---:|---:|")
    add(row3("denial with reasons + recourse, p50", "denied", "p50"))
    add(row3("denial with reasons + recourse, p99", "denied", "p99"))
    add(row3("denial, mean", "denied", "mean"))
    add(row3("approval (no recourse search), p50", "approved", "p50"))
    add(row3("approval, p99", "approved", "p99"))
    add(f"| cache hit (a round's first denial repeated), p50 / p99 | {s['hit_p50']:.2f} / "
        f"{s['hit_p99']:.2f} | – | – | – | – | – |")  # fmt: skip
    add("")
    add(f"Paired per applicant (the same denial, back to back), service − direct: median "
        f"{s['paired_denied_ms']:+.1f} ms.")  # fmt: skip
    add("")
    add("CPU time per request (ms; the service's processes from /proc/<pid>/task/*/schedstat, "
        "the in-process task and the direct calls from this process's clock; the load on the "
        "machine inflates these less than wall-clock times):")  # fmt: skip
    add("")
    add("| request | service: gateway | service: worker | worker task in-process | direct |")
    add("|---|---:|---:|---:|---:|")
    for kind in KINDS:
        gateway, workers = (s[f"service_cpu_{kind}_{p}_ms"] for p in ("gateway", "workers"))
        add(f"| {kind} | {gateway:.1f} | {workers:.1f} | {s[f'task_cpu_{kind}_ms']:.1f} | "
            f"{s[f'direct_cpu_{kind}_ms']:.1f} |")  # fmt: skip
    add("")
    comp = r["components"]
    add("### Where the service's time goes (denials, medians)")
    add("")
    add(f"- HTTP + validation + queue + process hop + response: service − worker task = "
        f"{s['service_denied_p50'] - s['task_denied_p50']:+.1f} ms at p50.")  # fmt: skip
    add(f"- The worker's work beyond the libraries: worker task − direct = "
        f"{s['task_denied_p50'] - s['direct_denied_p50']:+.1f} ms at p50 for a denial, "
        f"{s['task_approved_p50'] - s['direct_approved_p50']:+.1f} ms for an approval. Of it, "
        f"timed alone: the fairness probe (every other value of each protected feature "
        f"scored in one batch) {comp['fairness_probe_ms']:.1f} ms; writing one receipt to "
        f"SQLite (WAL, one transaction) {comp['receipt_write_ms']:.1f} ms; the rest is the "
        f"reasons and notice, re-scoring and constraint checks of each recourse option, and "
        f"any further DiCE search (the service asks again when DiCE returns duplicates or "
        f"options that address no stated reason).")  # fmt: skip
    warmed = r["single"]["workers_warmed"]
    add(f"- A new `options.seed` costs each worker {med(r['single']['engine_rebuild_ms']):.0f} "
        f"ms once (in-process: a denial's first decision with a new seed minus the same "
        f"decision again; median over rounds): the worker caches its decision engine per "
        f"distinct options *including the seed*, so it rebuilds the policy baseline, the "
        f"TreeSHAP explainer (with its self-check) and DiCE's data for every new seed. Each "
        f"round first sends two concurrent requests with its seed, so that both workers "
        f"rebuild before the timed requests (both workers were busy during that warm-up in "
        f"{sum(w >= 2 for w in warmed)} of {len(warmed)} rounds); the table shows the "
        f"steady state, which is also what a client sending no seed always gets.")  # fmt: skip
    add("")
    add(f"Checks: for {checks['same_as_task']} of {checks['compared']} requests the service's "
        f"decision document (without job id, receipt id and notice) equals the in-process "
        f"worker task's; decisions disagreeing between service and direct: "
        f"{checks['decision_mismatch']}; largest |service base value − direct "
        f"`expected_value`| {checks['base_value_error']:.1e}; denials with recourse found: "
        f"service {checks['recourse_found']}, direct DiCE {checks['direct_found']} of "
        f"{n * args.rounds}.")  # fmt: skip
    add("")
    add("## Batch notices")
    add("")
    add(f"`POST /v1/models/german-credit/adverse-action/batch` with the first {rows} "
        f"applicants of the data set as JSON, `\"wait\": 0`, polled every "
        f"{args.poll * 1000:.0f} ms on `GET /v1/jobs/{{id}}` until succeeded (submit → "
        f"succeeded, the whole result included); {args.batch_runs} runs, each with its own "
        f"`options.seed`; then `GET /v1/jobs/{{id}}/result?format=notices` once per run (not "
        f"in the throughput). The service splits the job into chunks of {r['chunk_size']} "
        f"applicants (recourse has a time budget, so chunks stay within the hard time limit) "
        f"over its {r['workers']} worker processes. **Direct loop**: the direct libraries "
        f"above applicant by applicant over the same {rows} applicants in one process, with "
        f"the service's seeds; direct and service runs alternate.")  # fmt: skip
    add("")
    ratio = s["batch_decisions_per_s"] / s["loop_decisions_per_s"]
    add("| | seconds | decisions/s | denials/s | denials | CPU s |")
    add("|---|---:|---:|---:|---:|---:|")
    add(f"| service, {r['workers']} workers | {s['batch_seconds']:.1f} | "
        f"{s['batch_decisions_per_s']:.1f} | {s['batch_denials_per_s']:.1f} | "
        f"{s['batch_denied']:.0f} | workers {s['batch_workers_cpu_s']:.1f} + gateway "
        f"{s['batch_gateway_cpu_s']:.1f} |")  # fmt: skip
    add(f"| direct loop, 1 process | {s['loop_seconds']:.1f} | "
        f"{s['loop_decisions_per_s']:.1f} | {s['loop_denials_per_s']:.1f} | "
        f"{s['loop_denied']:.0f} | {s['loop_cpu_s']:.1f} |")  # fmt: skip
    add(f"| ceiling now: direct loop in 2 forked processes, half each | "
        f"{s['two_seconds']:.1f} | {s['two_decisions_per_s']:.1f} | – | "
        f"{s['two_denied']:.0f} | {s['two_cpu_s']:.1f} |")  # fmt: skip
    ceiling = s["two_decisions_per_s"] / s["loop_decisions_per_s"]
    add("")
    add(f"Service ÷ direct loop: **{ratio:.2f}x** the throughput. Two perfectly parallel "
        f"copies of the direct loop on two free cores would give 2.0x; on this machine during "
        f"this run two processes of the direct loop reached {ceiling:.2f}x one process (the "
        f"ceiling row: the client, the gateway and other users share the cores), so the "
        f"service reached {s['batch_decisions_per_s'] / s['two_decisions_per_s']:.2f} of what "
        f"two processes of bare library calls could do here and now. CPU: the direct loop "
        f"in 2 processes ÷ the 2 workers = {s['two_cpu_s'] / s['batch_workers_cpu_s']:.2f} "
        f"(the same concurrency; below 1 is the worker's extra work per decision, chiefly the "
        f"fairness probe on every applicant, while the workers compute SHAP for a whole chunk "
        f"at once, cheaper per row than the loop); the direct loop's CPU in 2 processes ÷ in "
        f"1 process = {s['two_cpu_s'] / s['loop_cpu_s']:.2f} (above 1: two processes running "
        f"at once each get less done per CPU second on this machine, which inflates the "
        f"workers' CPU time alike). Job record "
        f"created → finished {s['batch_workers_s']:.1f} s; POST (validate + enqueue) "
        f"{s['batch_submit_s']:.2f} s; denials with recourse found "
        f"{s['batch_with_recourse']:.0f} of {s['batch_denied']:.0f}; notices download "
        f"{s['batch_notices_s'] * 1000:.0f} ms.")  # fmt: skip
    add("")
    add("## Raw runs")
    add("")
    for w in WAYS:
        for kind in KINDS:
            add(f"- {w}, {kind}: p50 per round {runs([x[f'{w}_{kind}']['p50'] for x in rounds])}; "
                f"p99 {runs([x[f'{w}_{kind}']['p99'] for x in rounds])} ms")  # fmt: skip
    add(f"- cache hit: p50 per round {runs([x['hit']['p50'] for x in rounds], 2)}; p99 "
        f"{runs([x['hit']['p99'] for x in rounds], 2)} ms")  # fmt: skip
    add(f"- new-seed engine rebuild, in-process: {runs(r['single']['engine_rebuild_ms'], 0)} ms")
    add(f"- service batch: seconds per run {runs([x['seconds'] for x in r['batch']])}; "
        f"decisions/s {runs([x['decisions_per_s'] for x in r['batch']])}")  # fmt: skip
    add(f"- direct loop: seconds per run {runs([x['seconds'] for x in r['direct_loop']])}; "
        f"decisions/s {runs([x['decisions_per_s'] for x in r['direct_loop']])}")  # fmt: skip
    add(f"- direct loop in 2 processes: seconds per run "
        f"{runs([x['seconds'] for x in r['direct_loop_two']])}; decisions/s "
        f"{runs([x['decisions_per_s'] for x in r['direct_loop_two']])}")  # fmt: skip
    return "\n".join(lines) + "\n"


def section(args: argparse.Namespace, r: dict[str, Any]) -> str:
    """The section of docs/benchmarks.md: headline numbers, the command, a link."""
    s = summary(r)
    ratio = s["batch_decisions_per_s"] / s["loop_decisions_per_s"]
    lines = [
        SECTION_START,
        "## Adverse-action decisions (reasons + recourse) over HTTP",
        "",
        f"Generated by `{r['command']}` on {r['date']} (load average before "
        f"{r['facts']['loadavg_start']}, at the end {r['loadavg_end']}; the machine was shared); "
        f"full report with the method, checks and raw runs: "
        f"[benchmarks/adverse_action.md](benchmarks/adverse_action.md). Embedded service "
        f"(`xai-service serve`, {r['workers']} worker processes) against `predict_proba` + "
        f"`shap.TreeExplainer` + `dice_ml` called directly in one process; medians over "
        f"{args.rounds} rounds of {args.requests} requests (cache misses) and "
        f"{args.batch_runs} batch runs.",
        "",
        "| measurement | service | direct libraries | service − direct | service ÷ direct |",
        "|---|---:|---:|---:|---:|",
        f"| single denial with reasons + recourse, p50 / p99 (ms) | "
        f"{s['service_denied_p50']:.0f} / {s['service_denied_p99']:.0f} | "
        f"{s['direct_denied_p50']:.0f} / {s['direct_denied_p99']:.0f} | "
        f"{s['service_denied_p50'] - s['direct_denied_p50']:+.0f} ms | "
        f"{s['service_denied_p50'] / s['direct_denied_p50']:.2f}x |",
        f"| single approval, p50 / p99 (ms) | {s['service_approved_p50']:.1f} / "
        f"{s['service_approved_p99']:.1f} | {s['direct_approved_p50']:.1f} / "
        f"{s['direct_approved_p99']:.1f} | "
        f"{s['service_approved_p50'] - s['direct_approved_p50']:+.1f} ms | "
        f"{s['service_approved_p50'] / s['direct_approved_p50']:.2f}x |",
        f"| cache hit, p50 / p99 (ms) | {s['hit_p50']:.2f} / {s['hit_p99']:.2f} | – | – | – |",
        f"| batch notices, {args.batch_rows} applicants: decisions/s (denials/s) | "
        f"{s['batch_decisions_per_s']:.1f} ({s['batch_denials_per_s']:.1f}) | "
        f"{s['loop_decisions_per_s']:.1f} ({s['loop_denials_per_s']:.1f}), loop in 1 process | "
        f"{s['batch_seconds']:.1f} s vs {s['loop_seconds']:.1f} s | {ratio:.2f}x the "
        f"throughput |",
        "",
        f"The same direct loop in 2 forked processes reached "
        f"{s['two_decisions_per_s'] / s['loop_decisions_per_s']:.2f}x one process during the "
        f"run (the ceiling for 2 workers on the shared machine then); the service reached "
        f"{s['batch_decisions_per_s'] / s['two_decisions_per_s']:.2f} of it.",
        "",
        f"Of the single denial's overhead, HTTP + queue is "
        f"{s['service_denied_p50'] - s['task_denied_p50']:+.0f} ms (service − the worker's "
        f"task run in-process) and the worker's extra work (reasons, fairness probe, "
        f"recourse checks, receipt) {s['task_denied_p50'] - s['direct_denied_p50']:+.0f} ms.",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> Path:
    """Replace this benchmark's section of docs/benchmarks.md, or append it; the rest of
    the file is left as it is."""
    from sections import write_section as replace

    return replace(ROOT / INDEX, text, SECTION_START, SECTION_END)


# --------------------------------------------------------------------------- main
def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    def say(text: str) -> None:
        print(text, flush=True)

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    warnings.simplefilter("ignore")
    models_dir = folder / "models"
    shutil.copytree(ROOT / "models", models_dir)
    store = ModelStore(models_dir)
    store.scan()
    model = LoadedModel.load(store.get(MODEL))
    pool = applicants()
    frame = model.frame(pool)
    instances = []
    for i, row in enumerate(pool):
        instance, issues = validate_instance(model.manifest, row, ("body", "applicant"))
        if issues:
            raise RuntimeError(f"applicant {i} is invalid: {issues}")
        instances.append(instance)
    denied_mask = model.predictor.probability(frame) < model.manifest.decision_threshold
    groups = {"denied": np.flatnonzero(denied_mask), "approved": np.flatnonzero(~denied_mask)}
    picks = {k: spread(groups[k], args.requests) for k in KINDS}
    warmers = {k: [int(i) for i in groups[k] if int(i) not in picks[k]][:3] for k in KINDS}

    say("building the direct explainers ...")
    direct = Direct(model)
    task = InProcessTask(models_dir, folder / "receipts-in-process.sqlite3", model)
    service = Service(folder, models_dir)
    say(f"starting the service on {service.url} (logs: {folder})")
    service.start()
    # warm every path once (imports, caches, connections) before anything is timed
    for i in (warmers["denied"][0], warmers["approved"][0]):
        direct.decide(frame.iloc[[i]].reset_index(drop=True), row_seed(args.seed - 1, 0))
        task(task.spec(instances[i], args.seed - 1, "warm"))
    warm_service(service.url, [pool[i] for i in warmers["denied"][:2]], args.seed - 1)
    # the service runs with the default settings (no XAI_ variable but ours)
    defaults = SimpleNamespace(**{k: f.default for k, f in Settings.model_fields.items()})
    options = {"adverse_action": {"recourse": {"enabled": True, **RECOURSE}}}
    chunk = DataPlane._chunk_size(SimpleNamespace(settings=defaults), options)  # type: ignore[arg-type]

    say(f"single calls: {args.rounds} rounds of {args.requests} denials + {args.requests} "
        f"approvals + {args.requests} cache hits")  # fmt: skip
    single = single_rounds(args, service, direct, task, pool, instances, frame, picks, warmers, say)
    comp = components(model, frame, picks["denied"], folder)

    rows = pool[: args.batch_rows]
    batch_frame = frame.iloc[: args.batch_rows].reset_index(drop=True)
    say(f"batch of {len(rows)} applicants, {args.batch_runs} runs (service and direct loop)")
    batch, loop, two, batch_load = [], [], [], []
    for run_ in range(args.batch_runs):
        seed = args.seed + 100 + run_
        loop.append(direct_loop(direct, batch_frame, seed))
        say(f"  direct loop: {loop[-1]['seconds']:.1f} s, "
            f"{loop[-1]['decisions_per_s']:.1f} decisions/s")  # fmt: skip
        two.append(direct_loop_two(direct, batch_frame, seed))
        say(f"  direct loop in 2 processes: {two[-1]['seconds']:.1f} s, "
            f"{two[-1]['decisions_per_s']:.1f} decisions/s")  # fmt: skip
        batch.append(service_batch(service, rows, seed, args.poll))
        batch_load.append(loadavg())
        say(f"  service run {run_ + 1}: {batch[-1]['seconds']:.1f} s, "
            f"{batch[-1]['decisions_per_s']:.1f} decisions/s, "
            f"{batch[-1]['denials_per_s']:.1f} denials/s; load {batch_load[-1]}")  # fmt: skip
        if not batch[-1]["denied"] == loop[-1]["denied"] == two[-1]["denied"]:
            raise RuntimeError(
                f"service denied {batch[-1]['denied']:.0f}, direct {loop[-1]['denied']:.0f}, "
                f"direct in 2 processes {two[-1]['denied']:.0f}"
            )
    return {
        "single": single, "components": comp, "batch": batch, "direct_loop": loop,
        "direct_loop_two": two, "batch_load": batch_load, "version": model.version.version_id,
        "background_rows": direct.background_rows, "denied_total": int(denied_mask.sum()),
        "workers": defaults.workers, "chunk_size": chunk, "argv": service.argv,
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (prints only)")
    parser.add_argument("--requests", type=int, help="denied (and approved) applicants per round")
    parser.add_argument("--rounds", type=int, help="latency rounds")
    parser.add_argument("--batch-rows", type=int, help="applicants per batch (max 1000)")
    parser.add_argument("--batch-runs", type=int, help="batch runs (each with a direct loop)")
    parser.add_argument("--seed", type=int, default=20_000, help="first request seed")
    parser.add_argument("--poll", type=float, default=0.25, help="job poll interval, seconds")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service's log")
    args = parser.parse_args(argv)
    quick = args.quick
    args.requests = args.requests or (10 if quick else 40)
    args.rounds = args.rounds or (2 if quick else 3)
    args.batch_rows = min(args.batch_rows or (200 if quick else 1000), 1000)
    args.batch_runs = args.batch_runs or (1 if quick else 2)
    args.write = not (quick or args.no_write)
    return args


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_exit)  # unwind through the finally that stops children
    atexit.register(stop_all)
    folder = Path(tempfile.mkdtemp(prefix="xai-bench-aa-"))
    facts = machine_facts(folder)
    ok = False
    try:
        results = run(args, folder)
        ok = True
    except BaseException:
        for proc in Proc.started:
            print(f"--- {proc.name} log tail ({proc.log}):\n{proc.tail(2000)}", file=sys.stderr)
        raise
    finally:
        stop_all()
        if ok and not args.keep_logs:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"logs kept in {folder}", file=sys.stderr)
    results["runtime_s"] = time.monotonic() - started
    results["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["command"] = shlex.join(
        [".venv/bin/python", "bench/bench_adverse_action.py", *sys.argv[1:]]
    )
    results["versions"] = versions()
    results["loadavg_end"] = loadavg()
    results["facts"] = facts
    text = report(args, results, facts)
    print()
    print(text)
    if args.write:
        out = ROOT / REPORT
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
        print(f"wrote its section of {write_section(section(args, results))}")
    else:
        print(section(args, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
