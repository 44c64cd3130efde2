#!/usr/bin/env python
"""Benchmark of the counterfactual explainer against dice-ml called directly.

On the ``german-credit`` demo model (gradient-boosted trees), for the first ``--applicants``
applicants of ``data/german_credit.csv`` that the model denies:

- ours: ``CounterfactualExplainer(model, CounterfactualOptions(count=3)).explain(row, [seed])``
  (DiCE behind the service's predictor, every candidate snapped, constraint-checked and
  re-scored on ``model.frame``, the time budget enforced with SIGALRM);
- direct: ``dice_ml.Dice(...).generate_counterfactuals`` on the scikit-learn pipeline itself,
  with the same settings: the same DiCE data (reference rows labelled by the model), the
  same method, ``total_CFs``, ``desired_class``, ``features_to_vary``, ``permitted_range``
  (the manifest's constraints for that applicant) and the same ``random_seed`` as our first
  DiCE search, so both runs draw the same samples.

Each applicant is timed ``--repeats`` times, ours and direct interleaved; the fastest of
the repeats is kept per applicant (the least disturbed by other load on the machine) and
the table gives the median over applicants. Validity re-scores what each
returned with the service's model at the manifest's threshold (DiCE's values as returned,
no rounding); "constraint-clean" is the share that also changes no immutable or protected
feature and respects directions, ranges, categories and integers.

    .venv/bin/python bench/bench_counterfactual.py   # writes docs/benchmarks/counterfactual.md
    .venv/bin/python bench/bench_counterfactual.py --quick   # 5 applicants, prints only
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # as in the service's workers

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.explainers.counterfactual import (  # noqa: E402
    OUTCOME,
    CounterfactualExplainer,
    CounterfactualOptions,
    _dice_range,
    _sub_seed,
)
from service.registry.loaded import LoadedModel  # noqa: E402
from service.registry.store import ModelStore  # noqa: E402

MODEL = "german-credit"
DATA = ROOT / "data" / "german_credit.csv"
REPORT = ROOT / "docs" / "benchmarks" / "counterfactual.md"
TARGET_MS = 10.0
RUNS = ("ours", "direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--method", default="random", choices=["random", "genetic"])
    parser.add_argument("--quick", action="store_true", help="5 applicants, 1 repeat, no report")
    args = parser.parse_args()
    if args.quick:
        args.applicants, args.repeats = 5, 1
    warnings.simplefilter("ignore")

    import skops.io
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    store = ModelStore(ROOT / "models")
    store.scan()
    version = store.get(MODEL)
    model = LoadedModel.load(version)
    artifact = version.file(version.manifest.artifact.path)
    pipeline = skops.io.load(artifact, trusted=skops.io.get_untrusted_types(file=artifact))

    rows = pd.read_csv(DATA).drop(columns="creditability").to_dict("records")
    frame = model.frame(rows)
    probability = model.predictor.probability(frame)
    denied = np.flatnonzero(probability < model.manifest.decision_threshold)[: args.applicants]

    options = CounterfactualOptions(count=args.count, method=args.method)
    ours = CounterfactualExplainer(model, options)
    direct = direct_dice(ours, pipeline)

    evidence: dict[int, dict[str, Any]] = {}

    def run_ours(i: int) -> list[dict[str, Any]]:
        result = ours.explain(frame.iloc[[i]].reset_index(drop=True), [i])[0]
        evidence[i] = result["evidence"]
        return [_apply(frame.iloc[i], c["changes"]) for c in result["counterfactuals"]]

    def run_direct(i: int) -> list[dict[str, Any]]:
        row = frame.iloc[[i]].reset_index(drop=True)
        return direct_counterfactuals(direct, ours, row, _sub_seed(i, 1))

    run_ours(int(denied[0]))  # warm-up: imports, caches
    run_direct(int(denied[0]))
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    times = {(run, clock): [] for run in RUNS for clock in clocks}  # type: ignore[var-annotated]
    found: dict[str, list[list[dict[str, Any]]]] = {run: [] for run in RUNS}
    for i in map(int, denied):
        per: dict[tuple[str, str], list[float]] = {key: [] for key in times}
        last: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeats):
            for name, run in (("ours", run_ours), ("direct", run_direct)):
                wall, cpu = time.perf_counter(), time.process_time()
                last[name] = run(i)
                per[name, "wall"].append((time.perf_counter() - wall) * 1000)
                per[name, "cpu"].append((time.process_time() - cpu) * 1000)
        for key in per:
            times[key].append(float(np.min(per[key])))
        for name in RUNS:
            found[name].append(last[name])
        print(
            f"applicant {i:4d}: ours {times['ours', 'wall'][-1]:7.1f} ms "
            f"(cpu {times['ours', 'cpu'][-1]:7.1f}), direct {times['direct', 'wall'][-1]:7.1f} ms "
            f"(cpu {times['direct', 'cpu'][-1]:7.1f})",
            flush=True,
        )

    table = []
    for name in RUNS:
        valid, clean, total = _validity(ours, model, frame, denied, found[name])
        row: dict[str, Any] = {"run": name, "returned": total, "validity": valid, "clean": clean}
        for clock in clocks:
            row[f"{clock}_median"] = float(np.median(times[name, clock]))
            row[f"{clock}_p90"] = float(np.percentile(times[name, clock], 90))
        table.append(row)
    overhead = {
        clock: np.array(times["ours", clock]) - np.array(times["direct", clock]) for clock in clocks
    }
    same = sum(
        _as_set(ours, a) == _as_set(ours, b)
        for a, b in zip(found["ours"], found["direct"], strict=True)
    )
    extra = sum(evidence[int(i)]["searches"] > 1 for i in denied)
    dropped = sum(evidence[int(i)]["dropped"] for i in denied)
    report = _report(args, denied, table, overhead, same, extra, dropped)
    print(report)
    if not args.quick:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(report)
        print(f"written to {REPORT.relative_to(ROOT)}")


def direct_dice(ours: CounterfactualExplainer, pipeline: Any) -> Any:
    """``dice_ml.Dice`` on the scikit-learn pipeline itself, with the same DiCE data and
    method as ``ours``."""
    import dice_ml

    return dice_ml.Dice(
        _direct_data(ours, pipeline),
        dice_ml.Model(model=pipeline, backend="sklearn"),
        method=ours.options.method,
    )


def direct_counterfactuals(
    direct: Any, ours: CounterfactualExplainer, row: pd.DataFrame, seed: int
) -> list[dict[str, Any]]:
    """One ``generate_counterfactuals`` call of ``direct`` (from :func:`direct_dice`) for a
    one-row typed frame, with ours' settings: ``total_CFs`` = count, the favourable class,
    features_to_vary and permitted_range (the manifest's constraints for this applicant),
    ``random_seed`` = ``seed``. DiCE's rows as returned (sparse ones where it made them)."""
    model = ours.model
    original = {f.name: row[f.name].iloc[0] for f in model.manifest.features}
    domains = {n: ours._domain(n, _plain(ours, n, original[n])) for n in ours.to_vary}
    varied = [n for n in ours.to_vary if domains[n] is not None]
    kwargs: dict[str, Any] = {
        "total_CFs": ours.options.count,
        "desired_class": 1,
        "features_to_vary": varied,
        "permitted_range": {n: _dice_range(domains[n]) for n in varied},  # type: ignore[arg-type]
    }
    if ours.options.method == "random":
        kwargs["random_seed"] = seed
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        np.random.seed(seed)
        try:
            result = direct.generate_counterfactuals(ours._to_dice(row), **kwargs)
        except Exception:  # noqa: BLE001 - DiCE raises when it finds none
            return []
    example = result.cf_examples_list[0]
    cfs = example.final_cfs_df_sparse
    cfs = example.final_cfs_df if cfs is None else cfs
    return [] if cfs is None else cfs[model.manifest.feature_names].to_dict("records")


def _as_set(ours: CounterfactualExplainer, cfs: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {tuple(_plain(ours, n, c[n]) for n in ours.names) for c in cfs}


def _direct_data(ours: CounterfactualExplainer, pipeline: Any) -> Any:
    """The same DiCE data as ours, labelled by the pipeline's own prediction."""
    import dice_ml

    data = ours.dice_data.data_df.copy()
    features = ours.names
    typed = ours.model.frame(data[features].astype(object).to_dict("records"))
    data[OUTCOME] = pipeline.predict_proba(typed)[:, 1] >= ours.threshold
    data[OUTCOME] = data[OUTCOME].astype(int)
    for feature in ours.features:
        if feature.type.value != "numeric":
            data[feature.name] = data[feature.name].astype(str)
    return dice_ml.Data(
        dataframe=data,
        continuous_features=[f.name for f in ours.features if f.type.value == "numeric"],
        outcome_name=OUTCOME,
        continuous_features_precision=dict(ours.precision),
    )


def _plain(ours: CounterfactualExplainer, name: str, value: Any) -> Any:
    feature = ours.model.manifest.feature(name)
    if feature.type.value == "numeric":
        number = float(value)
        return int(number) if feature.integer and number.is_integer() else number
    return str(value)


def _apply(row: pd.Series, changes: list[dict[str, Any]]) -> dict[str, Any]:
    values = row.to_dict()
    for change in changes:
        values[change["feature"]] = change["to"]
    return values


def _validity(
    ours: CounterfactualExplainer,
    model: LoadedModel,
    frame: pd.DataFrame,
    denied: np.ndarray,
    found: list[list[dict[str, Any]]],
) -> tuple[float | None, float | None, int]:
    valid = clean = total = 0
    for i, cfs in zip(map(int, denied), found, strict=True):
        if not cfs:
            continue
        instances = [
            {
                f.name: (float(c[f.name]) if f.type.value == "numeric" else str(c[f.name]))
                for f in model.manifest.features
            }
            for c in cfs
        ]
        scores = model.predictor.probability(model.frame(instances))
        row = frame.iloc[[i]].reset_index(drop=True)
        original = {f.name: _plain(ours, f.name, row[f.name].iloc[0]) for f in ours.features}
        domains = {n: ours._domain(n, original[n]) for n in ours.to_vary}
        for instance, score in zip(instances, scores, strict=True):
            total += 1
            reaches = score >= model.manifest.decision_threshold
            valid += int(reaches)
            within = ours._snap(instance, original, domains) is not None
            integers = all(float(instance[f.name]).is_integer() for f in ours.features if f.integer)
            clean += int(reaches and within and integers)
    if total == 0:
        return None, None, 0
    return valid / total, clean / total, total


def _report(
    args: argparse.Namespace,
    denied: np.ndarray,
    table: list[dict[str, Any]],
    overhead: dict[str, np.ndarray],
    same: int,
    extra: int,
    dropped: int,
) -> str:
    ours, direct = table
    valid = ours["validity"] == 1.0 and ours["clean"] == 1.0
    met = {
        clock: valid and ours[f"{clock}_median"] <= direct[f"{clock}_median"] + TARGET_MS
        for clock in ("wall", "cpu")
    }
    load = os.getloadavg()
    command = "bench/bench_counterfactual.py " + shlex.join(sys.argv[1:])
    lines = [
        "# Counterfactual explainer vs dice-ml called directly",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `.venv/bin/python {command.strip()}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, one BLAS/OpenMP thread; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)",
        f"- packages: dice-ml {metadata.version('dice-ml')}, numpy {metadata.version('numpy')}, "
        f"pandas {metadata.version('pandas')}, scikit-learn {metadata.version('scikit-learn')}",
        f"- model: `{MODEL}` (gradient-boosted trees); {len(denied)} denied applicants "
        f"(the first of `data/german_credit.csv`); count={args.count}, method={args.method}",
        f"- timing: {args.repeats} repeat(s) per applicant, ours and direct interleaved; the "
        "fastest repeat per applicant, then the median over applicants; wall-clock and CPU "
        "time of this process (CPU time is not inflated by other processes on the machine)",
        "- same settings both ways: DiCE data, features_to_vary (mutable, non-protected), "
        "permitted_range (manifest ranges, directions, ordinal order), desired class, "
        "random_seed, DiCE's default post-hoc sparsity",
        "",
        "| run | median ms / applicant (wall) | p90 wall | median ms (CPU) | p90 CPU "
        "| counterfactuals returned | validity (re-scored) | valid and constraint-clean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        lines.append(
            f"| {row['run']} | {row['wall_median']:.1f} | {row['wall_p90']:.1f} "
            f"| {row['cpu_median']:.1f} | {row['cpu_p90']:.1f} | {row['returned']} "
            f"| {_share(row['validity'])} | {_share(row['clean'])} |"
        )
    lines += [
        "",
        f"Both runs returned the same counterfactuals for {same} of {len(denied)} applicants "
        "(the same DiCE search, seeded alike). Ours dropped "
        f"{dropped} of DiCE's counterfactuals (invalid or breaking a constraint) and needed a "
        f"second DiCE search for {extra} applicant(s): it also drops duplicates (DiCE's "
        "post-hoc sparsity can turn two of its counterfactuals into the same row, which "
        "direct returns twice) and asks again for the missing ones.",
        "",
        "Paired difference ours − direct per applicant:",
        "",
        "| clock | median | mean | min | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for clock, diff in overhead.items():
        lines.append(
            f"| {clock} | {np.median(diff):+.1f} ms | {np.mean(diff):+.1f} ms "
            f"| {np.min(diff):+.1f} ms | {np.max(diff):+.1f} ms |"
        )
    verdict = {True: "**met**", False: "**not met**"}
    lines += [
        "",
        f"Target (ours ≤ direct + {TARGET_MS:.0f} ms per applicant, validity 1.0): "
        f"{verdict[met['wall']]} on wall-clock medians, {verdict[met['cpu']]} on CPU-time "
        "medians.",
        "",
        "The target compares medians. The mean difference is larger where ours ran a second "
        "DiCE search (see above): that search is work direct does not do, because direct "
        "returns the duplicate instead.",
        "",
        "Ours does what direct does not: DiCE scores through the service's predictor (any "
        "model format, the manifest's threshold), each candidate is snapped, checked against "
        "every constraint and re-scored on a typed frame from `model.frame` (the applicant's "
        "own score rides in the same batch), and DiCE runs under the SIGALRM deadline with "
        "the global random state saved and restored. Direct returns DiCE's rows as they are; "
        "its validity counts them as returned.",
        "",
    ]
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
