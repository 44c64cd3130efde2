#!/usr/bin/env python
"""Soak benchmark: one server driven with tens of thousands of distinct requests at a steady
rate; latency and memory per window of requests, first against last.

    .venv/bin/python bench/bench_soak.py                      # both modes, 50,000 each
    .venv/bin/python bench/bench_soak.py --mode embedded      # one mode (results merged)
    .venv/bin/python bench/bench_soak.py --quick              # 3,000 requests, prints only

Per mode the script starts its own processes on free loopback ports and stops them at the
end (also on error, Ctrl-C or SIGTERM):

- ``embedded``: ``python -m service.cli serve`` (its pool of ``--workers`` processes), the
  demo models, receipts in a temporary SQLite file;
- ``distributed``: ``redis-server`` (no persistence), the same gateway with
  ``XAI_REDIS_URL`` and ``--workers`` × ``python -m service.cli worker --concurrency 1``.

Every other setting is the service's default. After ``--warmup`` requests (not counted),
``--requests`` distinct requests are sent at ``--rate`` per second (open loop, at most
``--concurrency`` in flight) in the seeded ``--mix`` of single explains (SHAP), single
adverse-action decisions (reasons, recourse, receipt), single predictions and batches of
``--batch-rows`` applicants (explain and adverse-action in turn, submitted with
``wait: 0`` and followed through the ``location`` the server returns until they finish).
Memory (RSS of the gateway and of every worker process; Redis ``used_memory``) is sampled
every ``--sample-seconds``. Per window of ``--window`` requests: p50/p99 latency, errors,
memory. Targets: the last window's p50 within 10 % of the first's, memory growth below 5 %
over the last half of the run, no errors.

A full run writes ``docs/benchmarks/soak-<mode>.json``, then rebuilds from every mode's
JSON the report ``docs/benchmarks/soak.md``, the plot ``docs/benchmarks/soak.png`` and its
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os

BASE_ENV = dict(os.environ)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import atexit  # noqa: E402
import datetime as dt  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_service import (  # noqa: E402
    Cluster,
    Proc,
    free_port,
    machine_facts,
    stop_all,
    versions,
)
from soak_report import (  # noqa: E402
    MB,
    mode_summary_rows,
    plot,
    verdicts,
    window_table,
    windows,
)
from soak_traffic import Applicants, Driver, Plan  # noqa: E402

MODELS = ("german-credit", "german-credit-logit")
DATA = ROOT / "data" / "german_credit.csv"
OUT = ROOT / "docs" / "benchmarks"
INDEX = ROOT / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench_soak: start (written by bench/bench_soak.py) -->"
SECTION_END = "<!-- bench_soak: end -->"
MODES = ("embedded", "distributed")


# --------------------------------------------------------------------------- processes
def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("XAI_")}
    env.update(XAI_MODELS_DIR="models", XAI_HOST="127.0.0.1", PYTHONUNBUFFERED="1", **extra)
    return env


class Embedded:
    """``xai-service serve`` with its own worker pool."""

    redis_url: str | None = None

    def __init__(self, folder: Path, workers: int) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = service_env(
            XAI_PORT=str(port),
            XAI_WORKERS=str(workers),
            XAI_RECEIPTS_PATH=str(folder / "receipts.sqlite3"),
        )
        argv = [sys.executable, "-m", "service.cli", "serve"]
        self.gateway = Proc("gateway", argv, env, folder / "gateway-embedded.log")
        wait_ready(self.url, self.gateway)

    def pids(self) -> tuple[int, list[int]]:
        return self.gateway.pid, worker_pids(self.gateway.pid)

    def stop(self) -> None:
        self.gateway.stop()


class Distributed:
    """redis-server (``bench_service.Cluster``), the gateway and ``workers`` Celery workers
    of one process each."""

    def __init__(self, folder: Path, workers: int) -> None:
        cluster = Cluster(folder)
        cluster.start_redis()
        assert cluster.redis is not None
        self.redis, self.redis_url = cluster.redis, cluster.redis_url
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = service_env(XAI_REDIS_URL=self.redis_url, XAI_PORT=str(port))
        argv = [sys.executable, "-m", "service.cli", "serve"]
        self.gateway = Proc("gateway", argv, env, folder / "gateway-distributed.log")
        self.workers = []
        for n in range(workers):
            argv = [
                sys.executable, "-m", "service.cli", "worker", "--concurrency", "1",
                "--loglevel", "WARNING",
            ]  # fmt: skip
            self.workers.append(Proc(f"worker-{n}", argv, env, folder / f"worker-{n}.log"))
        wait_ready(self.url, self.gateway)
        deadline = time.monotonic() + 300
        while len(worker_pids_all(self.workers)) < 2 * workers:  # Celery parent + pool child
            for worker in self.workers:
                worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start their pool processes in 300 s")
            time.sleep(0.5)

    def pids(self) -> tuple[int, list[int]]:
        return self.gateway.pid, worker_pids_all(self.workers)

    def stop(self) -> None:
        for proc in [*self.workers, self.gateway, self.redis]:
            proc.stop()


def worker_pids_all(workers: list[Proc]) -> list[int]:
    return [p for w in workers if w.alive() for p in [w.pid, *worker_pids(w.pid)]]


def wait_ready(url: str, proc: Proc, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready in {timeout:.0f} s:\n{proc.tail()}")


def worker_pids(parent: int) -> list[int]:
    """Every process below ``parent`` except multiprocessing's resource tracker."""
    try:
        kids = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for kid in kids:
        try:
            if "resource_tracker" not in " ".join(kid.cmdline()):
                out.append(kid.pid)
        except psutil.Error:
            pass
    return out


def rss_and_cpu(pids: list[int]) -> tuple[int, float]:
    """Summed RSS (bytes) and CPU time so far (user + system seconds) of live processes."""
    memory, cpu = 0, 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                memory += process.memory_info().rss
                cpu += times.user + times.system
        except psutil.Error:
            pass
    return memory, cpu


class Sampler(threading.Thread):
    """Memory of the gateway, the workers and Redis every ``interval`` seconds."""

    def __init__(self, server: Embedded | Distributed, interval: float) -> None:
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.redis = None
        if server.redis_url:
            import redis

            self.redis = redis.Redis.from_url(server.redis_url)

    def sample(self) -> dict[str, Any]:
        gateway, workers = self.server.pids()
        gateway_rss, gateway_cpu = rss_and_cpu([gateway])
        workers_rss, workers_cpu = rss_and_cpu(workers)
        point = {
            "clock": time.monotonic(),
            "gateway": gateway_rss,
            "workers": workers_rss,
            "gateway_cpu": gateway_cpu,
            "workers_cpu": workers_cpu,
            "worker_processes": len(workers),
            "load1": float(Path("/proc/loadavg").read_text().split()[0]),
            "redis": 0,
        }
        if self.redis is not None:
            try:
                point["redis"] = int(self.redis.info("memory")["used_memory"])
            except Exception:  # noqa: BLE001 - a missed sample is not an error of the service
                pass
        return point

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.samples.append(self.sample())


# --------------------------------------------------------------------------- one mode
def base_rows() -> list[dict[str, Any]]:
    frame = pd.read_csv(DATA).drop(columns="creditability")
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def metrics(url: str) -> dict[str, float]:
    """The service's own gauges and counters from /metrics (no labels beyond one)."""
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(("xai_jobs{", "xai_cache_requests_total{", "xai_jobs_submitted")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def run_mode(mode: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    say(f"[{mode}] starting the service ...")
    started = time.monotonic()
    server: Embedded | Distributed = (
        Embedded(folder, args.workers) if mode == "embedded" else Distributed(folder, args.workers)
    )
    try:
        rows = base_rows()
        applicants = {}
        for offset, model in enumerate(MODELS):
            schema = httpx.get(f"{server.url}/v1/models/{model}", timeout=60).json()
            applicants[model] = Applicants(rows, schema["features"], args.seed + offset)
        plan = Plan(applicants, args.mix, args.batch_rows, args.seed)
        driver = Driver(server.url, args.rate, args.concurrency)
        say(f"[{mode}] ready after {time.monotonic() - started:.0f} s; warm-up: {args.warmup}")
        warm = asyncio.run(driver.run(plan, args.warmup, first=10**7))
        warm_errors = [o.error for o in warm if not o.ok]
        sampler = Sampler(server, args.sample_seconds)
        memory_start = sampler.sample()
        sampler.start()
        say(f"[{mode}] soak: {args.requests} requests at {args.rate}/s")
        outcomes = asyncio.run(
            driver.run(plan, args.requests, progress=lambda n: progress(mode, n, driver, sampler))
        )
        sampler.halt.set()
        sampler.join()
        service_metrics = metrics(server.url)
        memory_end = sampler.sample()
    finally:
        server.stop()
    soak_start = driver.start
    samples = [{**s, "t": s["clock"] - soak_start} for s in [*sampler.samples, memory_end]]
    records = [asdict(o) | {"latency": o.latency} for o in outcomes]
    result = {
        "mode": mode,
        "requests": args.requests,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "mix": args.mix,
        "batch_rows": args.batch_rows,
        "window": args.window,
        "workers": args.workers,
        "warmup": args.warmup,
        "warmup_errors": warm_errors[:10],
        "achieved_rate": len(outcomes)
        / max(max(o.finished for o in outcomes) - min(o.started for o in outcomes), 1e-9),
        "windows": windows(records, [{**memory_start, "t": 0.0}, *samples], args.window),
        "memory_start": memory_start,
        "memory_end": memory_end,
        "samples": samples[:: max(1, len(samples) // 1500)],
        "errors": sorted({o.error or "" for o in outcomes if not o.ok})[:20],
        "kinds": {
            k: sum(o.kind == k for o in outcomes) for k in sorted({o.kind for o in outcomes})
        },
        "service_metrics": service_metrics,
    }
    return result


def progress(mode: str, n: int, driver: Driver, sampler: Sampler) -> None:
    last = sampler.samples[-1] if sampler.samples else None
    memory = (
        f"; gateway {last['gateway'] / MB:.0f} MB, workers {last['workers'] / MB:.0f} MB"
        if last
        else ""
    )
    say(f"[{mode}] sent {n}, finished {driver.done}{memory}")


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- reports
def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Soak benchmark: latency and memory per window of distinct requests", ""]
    lines += [
        "Written by `bench/bench_soak.py`; see its docstring for the method. Each mode ran "
        "on its own, possibly at another time: its command, date and machine load are "
        "given with it. The machine is shared with other engineers' jobs, so absolute "
        "latencies are noisy; the load average (1 min) is listed per window.",
        "",
        *mode_summary_rows(results),
        "",
        "![latency and memory per window](soak.png)",
        "",
    ]
    for mode, r in results.items():
        v = verdicts(r)
        m = r["service_metrics"]
        lines += [
            f"## {mode}",
            "",
            f"Command: `{r['command']}` on {r['date']} ({r['runtime_s'] / 60:.0f} min). "
            f"{r['requests']:,} requests at {r['rate']:g}/s (achieved "
            f"{r['achieved_rate']:.1f}/s), at most {r['concurrency']} in flight, after "
            f"{r['warmup']} warm-up requests; mix {format_mix(r['mix'])}, batches of "
            f"{r['batch_rows']} applicants; {r['workers']} worker processes. Requests by "
            f"kind: {', '.join(f'{k} {n:,}' for k, n in r['kinds'].items())}.",
            "",
            f"- machine: {r['facts']['nproc']} cores ({r['facts']['cpu']}), Python "
            f"{r['facts']['python']}; load average at the start {r['facts']['loadavg_start']}, "
            f"at the end {r['loadavg_end']}",
            f"- last window's p50 ÷ first window's: {v['p50_ratio']:.2f} "
            f"({v['p50_first_ms']:.1f} → {v['p50_last_ms']:.1f} ms); CPU time per request, "
            f"last window ÷ first (less sensitive to the machine's load than latency): gateway "
            f"{v['gateway_cpu_ratio']:.2f}, workers {v['workers_cpu_ratio']:.2f}",
            f"- memory growth over the last half: gateway {v['gateway_growth']:+.1%}, workers "
            f"{v['workers_growth']:+.1%}; after warm-up gateway "
            f"{r['memory_start']['gateway'] / MB:.0f} MB, workers "
            f"{r['memory_start']['workers'] / MB:.0f} MB "
            f"({r['memory_start']['worker_processes']} processes); at the end "
            f"{r['memory_end']['gateway'] / MB:.0f} / {r['memory_end']['workers'] / MB:.0f} MB",
            f"- errors: {v['errors']}" + (f" ({'; '.join(r['errors'])})" if r["errors"] else ""),
            "- the service's /metrics at the end: "
            + ", ".join(f"`{k}` {val:,.0f}" for k, val in m.items()),
        ]
        if r["memory_end"].get("redis"):
            lines.append(
                f"- Redis `used_memory`: {r['memory_start']['redis'] / MB:.0f} MB after warm-up, "
                f"{r['memory_end']['redis'] / MB:.0f} MB at the end: job records and results "
                "live for `XAI_JOB_TTL_SECONDS` (1 h) and receipts are kept (no retention "
                "set), so Redis grows with the work done within the hour by design"
            )
        lines += ["", *window_table(r), ""]
    return "\n".join(lines)


def section(results: dict[str, dict[str, Any]]) -> str:
    commands = "; ".join(f"`{r['command']}` ({r['date']})" for r in results.values())
    return "\n".join(
        [
            SECTION_START,
            "## Soak: latency and memory over tens of thousands of distinct requests",
            "",
            f"Generated by {commands}; per-window tables in "
            "[benchmarks/soak.md](benchmarks/soak.md). One server per mode, the service's "
            "defaults, a steady rate of distinct requests (single explains, adverse-action "
            "decisions, predictions, batches). Targets: last window's p50 within 10 % of the "
            "first's, memory growth < 5 % over the last half, no errors. The machine was "
            "shared; compare the first and last windows of one run, not absolute figures.",
            "",
            *mode_summary_rows(results),
            "",
            "![soak: latency and memory per window](benchmarks/soak.png)",
            SECTION_END,
            "",
        ]
    )


def write_section(text: str) -> None:
    current = INDEX.read_text() if INDEX.exists() else ""
    if SECTION_START in current and SECTION_END in current:
        head, rest = current.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        INDEX.write_text(head + text + (("\n" + tail) if tail else ""))
    else:
        INDEX.write_text(current.rstrip("\n") + "\n\n" + text if current else text)


def format_mix(mix: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in mix.items())


def saved_results(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        mode: orjson.loads((folder / f"soak-{mode}.json").read_bytes())
        for mode in MODES
        if (folder / f"soak-{mode}.json").exists()
    }


# --------------------------------------------------------------------------- main
def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in ("explain", "adverse", "predict", "batch"):
            raise argparse.ArgumentTypeError(f"unknown kind {name!r} in --mix")
        mix[name] = float(weight)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("--mix needs a positive weight")
    return mix


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument("--requests", type=int, default=50_000, help="counted requests per mode")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=32, help="most requests in flight")
    parser.add_argument("--window", type=int, default=1000, help="requests per window")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted requests first")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=parse_mix("explain=0.7,adverse=0.1,predict=0.17,batch=0.03"),
        help="weights of explain, adverse, predict, batch",
    )
    parser.add_argument("--batch-rows", type=int, default=4, help="applicants per batch")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="3,000 requests, prints only")
    parser.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--out-dir", type=Path, default=OUT, help="where the JSON, report and plot go"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.window, args.warmup, args.write = 3000, 500, 100, False
    if args.requests < 2 * args.window:
        parser.error("--requests must cover at least two windows")
    return args


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_exit)
    atexit.register(stop_all)
    command = shlex.join([".venv/bin/python", "bench/bench_soak.py", *sys.argv[1:]])
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES if args.mode == "both" else (args.mode,):
        folder = Path(tempfile.mkdtemp(prefix=f"xai-soak-{mode}-"))
        facts = machine_facts()
        facts["nproc"] = str(len(os.sched_getaffinity(0)))  # nproc obeys OMP_NUM_THREADS=1
        started, ok = time.monotonic(), False
        try:
            result = run_mode(mode, args, folder)
            ok = True
        except BaseException:
            for proc in Proc.started:
                print(f"--- {proc.name} log ({proc.log}):\n{proc.tail(2000)}", file=sys.stderr)
            raise
        finally:
            stop_all()
            if ok and not args.keep_logs:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                print(f"logs kept in {folder}", file=sys.stderr)
        result |= {
            "command": command,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "runtime_s": time.monotonic() - started,
            "facts": facts,
            "loadavg_start": facts["loadavg_start"],
            "loadavg_end": loadavg(),
            "versions": versions(),
        }
        results[mode] = result
        if args.write:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            path = args.out_dir / f"soak-{mode}.json"
            path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    shown = {**saved_results(args.out_dir), **results} if args.write else results
    text = report(shown)
    print(text)
    if args.write:
        (args.out_dir / "soak.md").write_text(text + "\n")
        plot(shown, args.out_dir / "soak.png")
        if args.out_dir.resolve() == OUT.resolve():
            write_section(section(shown))
        say(f"wrote soak.md and soak.png in {args.out_dir}")
    ok = all(
        v["p50_ok"] and v["memory_ok"] and v["errors_ok"] for v in map(verdicts, results.values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
