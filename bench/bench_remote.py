#!/usr/bin/env python
"""Local vs remote registration of the same model: the same sampling-SHAP, LIME and
adverse-action work, timed side by side in one run.

    .venv/bin/python bench/bench_remote.py            # ~15-20 min on 2 cores; writes its
                                                      # section of docs/benchmarks.md
    .venv/bin/python bench/bench_remote.py --quick    # fewer applicants/repeats, prints only

The remote side is MLServer 1.7 (its scikit-learn runtime, ``parallel_workers: 0``) on a
loopback port, started by the script from ``.tmp/mlserver-venv`` (``make mlserver``)
with the demo pipelines; the local side loads the same pipelines from their skops files.
Both run in this process on one BLAS thread, interleaved within each repeat; medians over
repeats. Counted for each side: wall time per applicant and the part of it spent in model
calls, the explainer's model calls and the rows in them (the same algorithm, seeds and
background rows on both sides; a remote predictor prefers distinct rows, so the sampling
SHAP explainer sends it each distinct hybrid row once where a local one gets them all),
and for the remote side the HTTP requests, the rows actually sent (each distinct row of a
call is sent once; the fingerprint check rows ride along once per task), the time spent
encoding requests and decoding answers, and the endpoint's own time: the very request
bodies of the first repeat replayed straight to MLServer, one after another, by a bare
HTTP client (sequentially, so for 1000-row requests, which the service sends 4 at a
time, it overstates what the service waited).

Work, per applicant of the hold-out data:
* SHAP: antithetic permutation sampling (32 permutations, 50 background rows), log-odds;
  the local registration is asked for ``algorithm: sampling`` so that both evaluate the
  same hybrid rows (its default would be exact TreeSHAP/linear SHAP);
* LIME: 5000 samples; local on its default path (the samples' design matrix gathered from
  the encoded reference rows, which only a model the service holds allows) and on the
  plain path (the sample frame through the pipeline, the same evaluations as remote);
* adverse action: decision, reasons against the approved baseline, fairness probe (no
  recourse: DiCE's time budget would set the time); local seen only through its scores
  (so that its reasons come from the same sampling SHAP), and local as deployed.
The remote side runs with ``max_rows_per_call`` 1000 (the default) and 50000 (one
request per sampling round).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sections import write_section  # noqa: E402

from service.adverse.decision import AdverseActionEngine  # noqa: E402
from service.adverse.options import AdverseActionOptions, RecourseOptions  # noqa: E402
from service.explainers.lime import LimeExplainer, LimeOptions  # noqa: E402
from service.explainers.shap import ShapExplainer  # noqa: E402
from service.explainers.shap.options import ShapOptions  # noqa: E402
from service.registry.loaded import LoadedModel, read_rows  # noqa: E402
from service.registry.predictors import Predictor  # noqa: E402
from service.registry.remote import policy  # noqa: E402
from service.registry.remote.predictor import RemotePredictor  # noqa: E402
from service.registry.store import ModelStore  # noqa: E402
from tests.remote.conftest import Opaque, data_files, demo_manifest, register, remote_manifest  # noqa: E402
from tests.remote.modelserver import VENV, ModelServer  # noqa: E402

MODELS = ("german-credit", "german-credit-logit")
ROWS_PER_CALL = (1000, 50_000)
INDEX = "docs/benchmarks.md"
SECTION_START = "<!-- bench_remote: start (written by bench/bench_remote.py) -->"
SECTION_END = "<!-- bench_remote: end -->"
TARGET = 1.5
JSON = {"content-type": "application/json", "accept-encoding": "identity"}  # as the service asks


class Counter:
    """Counts and times a predictor's outermost model calls and their rows (patched onto
    the instance, so the predictor keeps its type and its views)."""

    def __init__(self, predictor: Predictor) -> None:
        self.calls = self.rows = 0
        self.seconds = 0.0
        self._depth = 0
        for name in ("margin", "probability", "output"):
            setattr(predictor, name, self._wrap(getattr(predictor, name)))

    def _wrap(self, call: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def counted(frame: pd.DataFrame, *args: Any) -> np.ndarray:
            outermost = self._depth == 0
            if outermost:
                self.calls += 1
                self.rows += len(frame)
            self._depth += 1
            started = time.perf_counter()
            try:
                return call(frame, *args)
            finally:
                self._depth -= 1
                if outermost:
                    self.seconds += time.perf_counter() - started

        return counted


@dataclass
class Measured:
    seconds: list[float] = field(default_factory=list)  # per repeat: per applicant
    in_calls: list[float] = field(default_factory=list)  # of which in model calls
    calls: int = 0  # per applicant
    rows: int = 0
    requests: int = 0  # remote only
    sent: int = 0
    codec: list[float] = field(default_factory=list)  # remote only: encode + decode
    direct: float = 0.0  # remote only: the same requests sent straight to the endpoint

    def ms(self, name: str) -> float:
        """Median over repeats, in ms per applicant, of seconds/in_calls/codec/outside."""
        values = self.outside() if name == "outside" else getattr(self, name)
        return statistics.median(values) * 1000

    def outside(self) -> list[float]:
        """Per repeat: the time outside the model calls (the explainer's own work)."""
        return [s - c for s, c in zip(self.seconds, self.in_calls, strict=True)]


class Recorder:
    """Keeps the request bodies a remote predictor sends (while ``on``), so that they can
    be replayed straight to the endpoint: its own time for the very same requests."""

    def __init__(self, predictor: RemotePredictor) -> None:
        self.bodies: list[bytes] = []
        self.on = False
        self.path = predictor.client.codec.path
        encode = predictor.client.codec.encode

        def recorded(frame: pd.DataFrame) -> bytes:
            body = encode(frame)
            if self.on:
                self.bodies.append(body)
            return body

        predictor.client.codec.encode = recorded  # type: ignore[method-assign]

    def replay(self) -> float:
        """Seconds to send every recorded body, one at a time, on one pooled connection."""
        with httpx.Client() as http:
            http.post(self.path, content=self.bodies[0], headers=JSON).raise_for_status()
            started = time.perf_counter()
            for body in self.bodies:
                http.post(self.path, content=body, headers=JSON).raise_for_status()
            return time.perf_counter() - started


def counted(model: LoadedModel, opaque: bool = False) -> tuple[LoadedModel, Counter]:
    """A fresh copy of the loaded model whose calls are counted."""
    if opaque:
        predictor: Predictor = Opaque(model.predictor)
    else:
        predictor = LoadedModel.load(model.version).predictor
    return LoadedModel(version=model.version, predictor=predictor), Counter(predictor)


def shap_work(model: LoadedModel) -> Callable[[pd.DataFrame, list[int]], Any]:
    explainer = ShapExplainer(model, ShapOptions(algorithm="sampling"))
    return explainer.explain


def lime_work(gather: bool) -> Callable[[LoadedModel], Callable[[pd.DataFrame, list[int]], Any]]:
    def build(model: LoadedModel) -> Callable[[pd.DataFrame, list[int]], Any]:
        return LimeExplainer(model, LimeOptions(), gather_design=gather).explain

    return build


def adverse_work(model: LoadedModel) -> Callable[[pd.DataFrame, list[int]], Any]:
    engine = AdverseActionEngine(
        model, AdverseActionOptions(recourse=RecourseOptions(enabled=False))
    )
    return lambda frame, seeds: engine.decide(frame, seeds, [None] * len(frame))


def measure(
    sides: dict[str, tuple[LoadedModel, Counter]],
    build: Callable[[LoadedModel], Callable[[pd.DataFrame, list[int]], Any]],
    rows: pd.DataFrame,
    repeats: int,
) -> dict[str, Measured]:
    """Each side builds its explainer once (not timed), then explains every applicant one
    call at a time; sides are interleaved within each repeat."""
    runs = {name: build(model) for name, (model, _) in sides.items()}
    out = {name: Measured() for name in sides}
    recorders = {
        name: Recorder(model.predictor)
        for name, (model, _) in sides.items()
        if isinstance(model.predictor, RemotePredictor)
    }
    seeds = list(range(len(rows)))
    for repeat in range(repeats):
        for name, explain in runs.items():
            model, counter = sides[name]
            counter.calls = counter.rows = 0
            counter.seconds = 0.0
            stats = _stats(model)
            before = (stats.requests, stats.rows, stats.codec_seconds) if stats else (0, 0, 0.0)
            recorder = recorders.get(name)
            if recorder is not None:
                recorder.on = repeat == 0
            started = time.perf_counter()
            for i in range(len(rows)):
                policy.begin_task()  # as a worker does per task (one applicant per task here)
                explain(rows.iloc[[i]], seeds[i : i + 1])
                policy.end_task()
            out[name].seconds.append((time.perf_counter() - started) / len(rows))
            out[name].in_calls.append(counter.seconds / len(rows))
            if stats:
                out[name].codec.append((stats.codec_seconds - before[2]) / len(rows))
            if repeat == 0:
                out[name].calls, out[name].rows = (
                    counter.calls // len(rows),
                    counter.rows // len(rows),
                )
                if stats:
                    out[name].requests = (stats.requests - before[0]) // len(rows)
                    out[name].sent = (stats.rows - before[1]) // len(rows)
    for name, recorder in recorders.items():
        recorder.on = False
        out[name].direct = statistics.median(recorder.replay() for _ in range(repeats)) / len(rows)
    return out


def _stats(model: LoadedModel) -> Any:
    predictor = model.predictor
    return predictor.client.stats if isinstance(predictor, RemotePredictor) else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    folder = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    server = ModelServer(folder / "mlserver")
    store = ModelStore(ROOT / "models")
    store.scan()
    local = {name: LoadedModel.load(store.get(name)) for name in MODELS}
    for name in MODELS:
        server.serve(name, local[name].predictor.model)  # type: ignore[attr-defined]
    server.start()
    results: dict[str, Any] = {"load_start": _load(), "models": {}}
    try:
        scratch = ModelStore(folder / "models")
        for name in MODELS:
            remote = {}
            for per_call in ROWS_PER_CALL:
                manifest = remote_manifest(
                    demo_manifest(name), f"{name}-remote-{per_call}", server.url,
                    max_rows_per_call=per_call,
                )  # fmt: skip
                version = register(scratch, manifest, data_files(name), folder)
                remote[per_call] = LoadedModel.load(version)
            rows = _applicants(local[name], args.applicants)
            sides = {"local": counted(local[name])}
            sides |= {f"remote {n}": counted(remote[n]) for n in ROWS_PER_CALL}
            opaque = {"local, scores only": counted(local[name], opaque=True)}
            work = {
                "SHAP sampling": (shap_work, sides),
                "LIME (local: design path)": (lime_work(True), sides),
                "LIME (local: plain path)": (lime_work(False), {"local": counted(local[name])}),
                "adverse action": (adverse_work, opaque | sides),
            }
            results["models"][name] = {}
            for label, (build, chosen) in work.items():
                print(f"{name}: {label}", flush=True)
                results["models"][name][label] = measure(chosen, build, rows, args.repeats)
    finally:
        server.stop()
    results["load_end"] = _load()
    return results


def _applicants(model: LoadedModel, count: int) -> pd.DataFrame:
    data = model.manifest.evaluation_data
    assert data is not None
    return read_rows(model.version.file(data.path), model.manifest).iloc[:count]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [
        SECTION_START,
        "## Remote models: local vs MLServer registration of the same model",
        "",
        f"Generated by `{results['command']}` on {results['date']} (load average before "
        f"{results['load_start']}, after {results['load_end']}; the machine was shared, read "
        f"the ratios, measured side by side in the same run). {args.applicants} hold-out "
        f"applicants, one explainer call per applicant, medians of {args.repeats} repeats; "
        f"MLServer {results['mlserver']} (scikit-learn runtime, `parallel_workers: 0`) on "
        f"loopback, the service's side in-process on one BLAS thread; Python "
        f"{platform.python_version()}. Method: the docstring of `bench/bench_remote.py`.",
        "",
        "| model | work | side | ms / applicant | of which in model calls | of those: our "
        "encode + decode | the same requests sent straight to the endpoint | outside model "
        "calls | model calls | rows in them | HTTP requests | rows sent | ÷ local |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, works in results["models"].items():
        for label, sides in works.items():
            base_name = "local, scores only" if label == "adverse action" else "local"
            base = statistics.median(sides[base_name].seconds)
            for side, m in sides.items():
                ratio = statistics.median(m.seconds) / base
                remote = side.startswith("remote")
                codec = f"{m.ms('codec'):.0f}" if remote else "–"
                direct = f"{m.direct * 1000:.0f}" if remote else "–"
                cells = [
                    name, label, side, f"{m.ms('seconds'):.0f}", f"{m.ms('in_calls'):.0f}", codec,
                    direct,
                    f"{m.ms('outside'):.0f}",
                    str(m.calls), f"{m.rows:,}",
                    str(m.requests) if remote else "–", f"{m.sent:,}" if remote else "–",
                    f"{ratio:.2f}x" if side != base_name else "1",
                ]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
                if remote:
                    reference = sides[base_name]
                    if label.startswith("LIME (local: design"):
                        reference = works["LIME (local: plain path)"]["local"]
                    verdicts.append((name, label, side, m, reference))
    lines += [
        "",
        f"At equal model evaluations (target: remote ≤ {TARGET}x local), and where the extra "
        "time goes (medians, ms per applicant). The endpoint's own time is the same request "
        "bodies replayed straight to it, one after another, by a bare HTTP client (HTTP, "
        "MLServer decoding each request into a DataFrame, its predict, encoding the answer; "
        "sequential, so it overstates the wait for 1000-row requests sent 4 at a time); "
        "the service's own cost in its model calls is the rest (our encoding, decoding, "
        "de-duplication and the fingerprint check); the time outside the model calls is the "
        "explainer's own work, the same algorithm on both sides. The last figure is the "
        "target's ratio with the endpoint's own time replaced by the local predict's:",
        "",
    ]
    for name, label, side, m, reference in verdicts:
        label = "LIME (vs the local plain path)" if label.startswith("LIME") else label
        ratio = m.ms("seconds") / reference.ms("seconds")
        mark = "meets" if ratio <= TARGET else "misses"
        endpoint = m.direct * 1000
        ours = m.ms("in_calls") - endpoint
        without = (reference.ms("seconds") + ours + m.ms("outside") - reference.ms("outside")) / (
            reference.ms("seconds")
        )
        lines.append(
            f"- {name}, {label}, {side}: {ratio:.2f}x ({mark} the target); the endpoint's own "
            f"time {endpoint:.0f} ms against {reference.ms('in_calls'):.0f} ms for the local "
            f"predict; the service's own cost in the calls {ours:+.0f} ms (of which encode + "
            f"decode {m.ms('codec'):.0f} ms), outside them "
            f"{m.ms('outside') - reference.ms('outside'):+.0f} ms; at the local predict's "
            f"speed: {without:.2f}x"
        )
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 applicants, 1 repeat, print only")
    args = parser.parse_args()
    if args.quick:
        args.applicants, args.repeats = 2, 1
    results = run(args)
    results["command"] = "python " + shlex.join(["bench/bench_remote.py", *sys.argv[1:]])
    results["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pins = VENV / "pins.txt"
    results["mlserver"] = pins.read_text().split()[0].split("==")[1] if pins.exists() else "?"
    text = report(args, results)
    print(text)
    if not args.quick:
        print(f"wrote {write_section(ROOT / INDEX, text, SECTION_START, SECTION_END)}")


if __name__ == "__main__":
    main()
