"""The soak benchmark's figures: per window of requests, latency percentiles, errors and
memory; the verdicts against the targets; the markdown report and the plot."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np

P50_TOLERANCE = 0.10  # the last window's p50 at most 10 % above the first's
MEMORY_TOLERANCE = 0.05  # growth over the last half of the run
MB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def windows(
    outcomes: list[dict[str, Any]], samples: list[dict[str, Any]], size: int
) -> list[dict[str, Any]]:
    """One row per ``size`` consecutive requests (in the order they were sent): latency
    p50/p99 (all kinds and per kind), errors, lag behind the schedule, and the memory
    sampled when the window's last request finished."""
    times = [s["t"] for s in samples]
    rows = []
    before = samples[0]  # taken when the soak started
    for start in range(0, len(outcomes) - size + 1, size):
        part = outcomes[start : start + size]
        latencies = [o["latency"] for o in part]
        end = max(o["finished"] for o in part)
        sample = samples[max(bisect.bisect_right(times, end) - 1, 0)]
        cpu = {
            f"{p}_cpu_ms": (sample[f"{p}_cpu"] - before[f"{p}_cpu"]) / size * 1e3
            for p in ("gateway", "workers")
        }
        before = sample
        kinds = sorted({o["kind"] for o in part})
        rows.append(
            {
                "window": start // size,
                "first_request": start,
                "end_s": end,
                "rate": size / max(end - min(o["started"] for o in part), 1e-9),
                "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3,
                "p50_ms_by_kind": {
                    k: percentile([o["latency"] for o in part if o["kind"] == k], 50) * 1e3
                    for k in kinds
                },
                "errors": sum(not o["ok"] for o in part),
                "accepted": sum(o["accepted"] for o in part),
                "hits": sum(o["cache"] == "hit" for o in part),
                "lag_p99_s": percentile([o["started"] - o["scheduled"] for o in part], 99),
                **cpu,
                "gateway_mb": sample.get("gateway", 0) / MB,
                "workers_mb": sample.get("workers", 0) / MB,
                "redis_mb": sample.get("redis", 0) / MB,
                "load1": sample.get("load1", float("nan")),
            }
        )
    return rows


def growth(rows: list[dict[str, Any]], key: str) -> float:
    """Relative change of ``key`` from the middle window to the last one."""
    middle, last = rows[(len(rows) - 1) // 2][key], rows[-1][key]
    return (last - middle) / middle if middle else float("nan")


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["windows"]
    first, last = rows[0]["p50_ms"], rows[-1]["p50_ms"]
    errors = sum(r["errors"] for r in rows)
    out = {
        "p50_first_ms": first,
        "p50_last_ms": last,
        "p50_ratio": last / first,
        "p50_ok": last <= first * (1 + P50_TOLERANCE),
        "gateway_growth": growth(rows, "gateway_mb"),
        "workers_growth": growth(rows, "workers_mb"),
        "errors": errors,
        "errors_ok": errors == 0,
        "gateway_cpu_ratio": rows[-1]["gateway_cpu_ms"] / rows[0]["gateway_cpu_ms"],
        "workers_cpu_ratio": rows[-1]["workers_cpu_ms"] / rows[0]["workers_cpu_ms"],
    }
    out["memory_ok"] = max(out["gateway_growth"], out["workers_growth"]) < MEMORY_TOLERANCE
    return out


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def mode_summary_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| mode | requests | achieved rate (req/s) | p50 first → last window (ms) | "
        "p99 first → last (ms) | CPU per request, first → last window: gateway / workers "
        "(ms) | gateway RSS: after warm-up → last window, growth over the last half | "
        "workers RSS: same | errors | verdict |",
        "|---|---:|---:|---|---|---|---|---|---:|---|",
    ]
    for mode, r in results.items():
        v, rows = verdicts(r), r["windows"]
        ok = v["p50_ok"] and v["memory_ok"] and v["errors_ok"]
        lines.append(
            f"| {mode} | {r['requests']:,} | {r['achieved_rate']:.1f} | "
            f"{v['p50_first_ms']:.1f} → {v['p50_last_ms']:.1f} ({v['p50_ratio']:.2f}x) "
            f"{verdict(v['p50_ok'])} | {rows[0]['p99_ms']:.0f} → {rows[-1]['p99_ms']:.0f} | "
            f"{rows[0]['gateway_cpu_ms']:.1f} → {rows[-1]['gateway_cpu_ms']:.1f} / "
            f"{rows[0]['workers_cpu_ms']:.0f} → {rows[-1]['workers_cpu_ms']:.0f} | "
            f"{r['memory_start']['gateway'] / MB:.0f} → {rows[-1]['gateway_mb']:.0f} MB, "
            f"{v['gateway_growth']:+.1%} | "
            f"{r['memory_start']['workers'] / MB:.0f} → {rows[-1]['workers_mb']:.0f} MB, "
            f"{v['workers_growth']:+.1%} {verdict(v['memory_ok'])} | {v['errors']} "
            f"{verdict(v['errors_ok'])} | {'all targets met' if ok else 'missed'} |"
        )
    return lines


def window_table(r: dict[str, Any]) -> list[str]:
    kinds = sorted({k for row in r["windows"] for k in row["p50_ms_by_kind"]})
    redis = any(row["redis_mb"] for row in r["windows"])
    head = (
        "| window | requests | rate (req/s) | p50 / p99 (ms) | "
        + " | ".join(f"p50 {k} (ms)" for k in kinds)
        + " | errors | 202 followed | lag p99 (s) | CPU per request: gateway / workers (ms) | "
        + "gateway RSS (MB) | workers RSS (MB) | "
        + ("Redis used (MB) | " if redis else "")
        + "load (1 min) |"
    )
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for row in r["windows"]:
        by_kind = " | ".join(f"{row['p50_ms_by_kind'].get(k, float('nan')):.1f}" for k in kinds)
        last = row["first_request"] + r["window"] - 1
        lines.append(
            f"| {row['window']} | {row['first_request']:,}–{last:,} | {row['rate']:.1f} | "
            f"{row['p50_ms']:.1f} / {row['p99_ms']:.0f} | {by_kind} | "
            f"{row['errors']} | {row['accepted']} | {row['lag_p99_s']:.2f} | "
            f"{row['gateway_cpu_ms']:.1f} / {row['workers_cpu_ms']:.0f} | "
            f"{row['gateway_mb']:.0f} | {row['workers_mb']:.0f} | "
            + (f"{row['redis_mb']:.0f} | " if redis else "")
            + f"{row['load1']:.1f} |"
        )
    return lines


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Latency and memory per window, one column per mode."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.2 * len(results), 10), dpi=110, layout="constrained")
    axes = figure.subplots(3, len(results), squeeze=False)
    for column, (mode, r) in enumerate(results.items()):
        rows = r["windows"]
        x = [(row["first_request"] + r["window"]) / 1000 for row in rows]
        top, middle, bottom = axes[0][column], axes[1][column], axes[2][column]
        top.plot(x, [row["p50_ms"] for row in rows], label="p50, all requests")
        top.plot(x, [row["p99_ms"] for row in rows], label="p99, all requests")
        for kind in ("explain", "predict"):
            values = [row["p50_ms_by_kind"].get(kind) for row in rows]
            if any(v is not None for v in values):
                top.plot(x, values, linestyle=":", label=f"p50, {kind}")
        top.set_yscale("log")
        top.set_ylabel(f"latency per window of {r['window']} requests (ms)")
        top.set_title(
            f"{mode}: {r['requests']:,} distinct requests at {r['rate']:g}/s\n"
            f"(load average {r['loadavg_start']} → {r['loadavg_end']})",
            fontsize=10,
        )
        top.grid(True, which="both", alpha=0.3)
        top.set_xlim(left=0)
        top.legend(fontsize=8, loc="upper left")
        load = top.twinx()
        load.plot(x, [row["load1"] for row in rows], color="grey", alpha=0.5, linewidth=1)
        load.set_ylabel("machine load average, 1 min (grey)", color="grey")
        load.set_ylim(bottom=0)
        middle.plot(x, [row["gateway_cpu_ms"] for row in rows], label="gateway")
        middle.plot(x, [row["workers_cpu_ms"] for row in rows], label="worker processes")
        middle.set_ylim(bottom=0)
        middle.set_xlim(left=0)
        middle.set_ylabel("CPU time per request (ms)")
        middle.grid(True, alpha=0.3)
        middle.legend(fontsize=8)
        bottom.plot(x, [row["gateway_mb"] for row in rows], label="gateway RSS")
        bottom.plot(x, [row["workers_mb"] for row in rows], label="worker processes RSS (sum)")
        if any(row["redis_mb"] for row in rows):
            redis = [row["redis_mb"] for row in rows]
            bottom.plot(x, redis, linestyle="--", label="Redis used_memory")
        bottom.set_ylim(bottom=0)
        bottom.set_xlim(left=0)
        bottom.set_xlabel("requests sent (thousands)")
        bottom.set_ylabel("MB")
        bottom.grid(True, alpha=0.3)
        bottom.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
