"""Sampling SHAP error: the service's antithetic permutation estimator vs shap.KernelExplainer.

Ground truth: exact interventional TreeSHAP of the German credit demo model (log-odds) with
the same background rows. Both estimators explain the same applicants; we report mean
squared error against the truth and time per explanation, at KernelExplainer's default
budget and at equal time.

    .venv/bin/python bench/bench_sampling_shap.py [--applicants 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import shap
from threadpoolctl import threadpool_limits

from service.explainers.shap.attribution import group_columns
from service.explainers.shap.permutation import PermutationShap
from service.explainers.shap.tree import TreeShap
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

ROOT = Path(__file__).resolve().parent.parent
BACKGROUND_ROWS = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--applicants", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/sampling_shap.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    threadpool_limits(1)
    store = ModelStore(ROOT / "models")
    store.scan()
    model = LoadedModel.load(store.get("german-credit"))
    predictor = model.predictor
    background = model.reference.sample(BACKGROUND_ROWS, random_state=0).reset_index(drop=True)
    truth_engine = TreeShap(predictor, background)
    data = pd.read_csv(ROOT / "data/german_credit.csv").drop(columns="creditability")
    rows = model.frame(data.sample(args.applicants, random_state=1).to_dict("records"))
    truth = truth_engine.explain(rows).values

    design_bg = predictor.design(background)
    columns = predictor.column_features()
    estimator = predictor.tree_model()

    def f_design(x: np.ndarray) -> np.ndarray:
        return predictor.output_sign * estimator.decision_function(x)

    kernel = shap.KernelExplainer(f_design, design_bg)
    kernel_err, kernel_time, kernel_evals = [], [], []
    for i in range(len(rows)):
        x = predictor.design(rows.iloc[[i]])
        start = time.perf_counter()
        values = kernel.shap_values(x, silent=True)
        kernel_time.append(time.perf_counter() - start)
        by_feature = group_columns(np.reshape(values, (1, -1)), columns, rows.shape[1])[0]
        kernel_err.append(np.mean((by_feature - truth[i]) ** 2))
        kernel_evals.append(kernel.nsamplesRun * BACKGROUND_ROWS)

    def ours(permutations: int) -> tuple[list[float], list[float], int]:
        engine = PermutationShap(predictor, background, "log_odds", permutations)
        errors, times = [], []
        for i in range(len(rows)):
            start = time.perf_counter()
            estimate = engine.explain_row(rows.iloc[[i]], seed=i).values[0]
            times.append(time.perf_counter() - start)
            errors.append(np.mean((estimate - truth[i]) ** 2))
        evals = permutations * (rows.shape[1] + 1) * BACKGROUND_ROWS
        return errors, times, evals

    kernel_t = statistics.median(kernel_time)
    results = {}
    for permutations in (8, 16, 32, 64, 128):
        results[permutations] = ours(permutations)
    # Equal time: the largest permutation count whose median time <= Kernel's.
    equal_time = max(
        (p for p, r in results.items() if statistics.median(r[1]) <= kernel_t), default=min(results)
    )
    # Equal evaluations: the count closest to Kernel's median model evaluations.
    kernel_e = statistics.median(kernel_evals)
    equal_evals = min(results, key=lambda p: abs(results[p][2] - kernel_e))

    lines = [
        "# Sampling SHAP vs shap.KernelExplainer",
        "",
        "Command: `.venv/bin/python bench/bench_sampling_shap.py "
        f"--applicants {args.applicants}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
        f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
        f"Python {platform.python_version()}, shap {shap.__version__}; one BLAS thread.",
        "",
        f"German credit demo model (gradient-boosted trees, 20 raw features), log-odds, "
        f"{BACKGROUND_ROWS} background rows; truth = exact interventional TreeSHAP with the same "
        f"background; {args.applicants} applicants; medians per explanation.",
        "",
        "| estimator | model evaluations | ms / explanation | mean squared error |",
        "|---|---|---|---|",
        f"| shap.KernelExplainer (defaults, nsamples=auto) | {kernel_e:,.0f} | "
        f"{kernel_t * 1000:.1f} | {statistics.median(kernel_err):.2e} |",
    ]
    for permutations, (errors, times, evals) in results.items():
        lines.append(
            f"| service permutation, {permutations} permutations (antithetic) | {evals:,} | "
            f"{statistics.median(times) * 1000:.1f} | {statistics.median(errors):.2e} |"
        )
    ratio_time = statistics.median(kernel_err) / statistics.median(results[equal_time][0])
    ratio_evals = statistics.median(kernel_err) / statistics.median(results[equal_evals][0])
    lines += [
        "",
        f"At equal time ({equal_time} permutations, within Kernel's {kernel_t * 1000:.0f} ms): "
        f"squared error {ratio_time:.1f}x lower than KernelExplainer "
        f"(target >= 4x: {'met' if ratio_time >= 4 else 'NOT met'}).  ",
        f"At about equal model evaluations ({equal_evals} permutations): {ratio_evals:.1f}x lower.",
        "",
        "Our estimator also reports a per-feature standard error (Student-t corrected) and is "
        "exactly additive (every permutation telescopes to f(x) - E f(background)); "
        "KernelExplainer's additivity is enforced by its constraint.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
