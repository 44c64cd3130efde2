#!/usr/bin/env python
"""Benchmark of the service's LIME (``service/explainers/lime.py``) against the ``lime``
package's ``LimeTabularExplainer`` on both demo models.

    .venv/bin/python bench/bench_lime.py            # full run (~2-3 min on 2 cores), writes
                                                    # docs/benchmarks/lime.md
    .venv/bin/python bench/bench_lime.py --quick    # 10 applicants, 2 repeats, prints only

Same model, same applicants (the first N rows of each model's hold-out evaluation data),
same settings on both sides: 5000 samples (the instance included), quartile
discretisation from the 200 reference rows, kernel width 0.75 * sqrt(20), 10 features by
lime's 'auto' selection (here: highest weights), a weighted Ridge(alpha=1) surrogate of
P(favourable class). lime gets the model as a ``predict_fn`` that decodes its numeric
array (categoricals as category indices) into the typed frame and calls
``predictor.probability`` once per explanation.

Measured, one thread (BLAS/OpenMP limited to 1, as in the service's workers), the three
implementations interleaved within each repeat, medians over repeats:
* ms per explanation, and of that the time inside model calls;
* weighted R^2 of each surrogate on its own samples;
* agreement with lime over the applicants: Jaccard overlap of the 10 selected features
  and of the top 5 by |weight|, Spearman rank correlation of the weights of the common
  features, sign agreement, identical conditions (bins/categories). The same statistics
  between two seeds of lime itself (repeat 0 vs repeat 1) and of the service give the
  noise floor the cross-implementation numbers should be read against.
The service's LIME runs twice: on its default path (the samples' design matrix gathered
from the reference rows' encoded columns, proved exact at construction) and forced onto
the plain path (the sample frame through ``predictor.output``); both must give the same
explanations. Two more rows price alternatives: the service with 1000 samples (not an
equal-sample comparison), and, for agreement only (untimed), lime with its sampling of
single-value quartile bins corrected (lime 0.2.0.1 draws 0 there, a value absent from the
data), which shows how much of the service-vs-lime difference that defect explains.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lime.lime_tabular import LimeTabularExplainer  # noqa: E402

from service.explainers.lime import LimeExplainer, LimeOptions  # noqa: E402
from service.registry.loaded import LoadedModel, read_rows  # noqa: E402
from service.registry.manifest import FeatureType  # noqa: E402
from service.registry.store import ModelStore  # noqa: E402

MODELS = ("german-credit", "german-credit-logit")
SAMPLES = 5000
NUM_FEATURES = 10
TOP = 5
TARGET = 5.0
OUT = ROOT / "docs" / "benchmarks" / "lime.md"
VERSIONS = ("lime", "numpy", "scipy", "scikit-learn", "pandas")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
FEW_SAMPLES = 1000
FEW = f"service, {FEW_SAMPLES} samples"
IMPLEMENTATIONS = ("service", "service (plain path)", "lime", FEW)
FIXED = "lime, single-value bins fixed"


@dataclass
class Explained:
    """One implementation's explanation of one applicant, reduced to what is compared."""

    weights: dict[str, float]  # feature -> weight
    conditions: dict[str, str]  # feature -> condition text
    r2: float
    local_error: float  # |surrogate(x) - f(x)|


@dataclass
class Run:
    seconds: list[list[float]] = field(default_factory=list)  # per repeat, per applicant
    model_seconds: list[float] = field(default_factory=list)  # per repeat: in model calls
    explained: list[list[Explained]] = field(default_factory=list)  # per repeat
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------ implementations
class Timer:
    """Wraps a model call and adds up its time."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call, self.total = call, 0.0

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.call(*args)
        finally:
            self.total += time.perf_counter() - start


class Service:
    def __init__(self, model: LoadedModel, gather_design: bool, samples: int = SAMPLES) -> None:
        self.explainer = LimeExplainer(
            model, LimeOptions(samples=samples, num_features=NUM_FEATURES),
            gather_design=gather_design,
        )  # fmt: skip
        expected = "design" if gather_design else "frame"
        assert self.explainer.model_evaluation == expected, self.explainer.design_note
        self.timer = Timer(self.explainer._model_output)
        self.explainer._model_output = self.timer  # type: ignore[method-assign]

    def explain(self, frame: pd.DataFrame, seed: int) -> Explained:
        result = self.explainer.explain(frame, [seed])[0]
        return Explained(
            weights={w["feature"]: w["weight"] for w in result["weights"]},
            conditions={w["feature"]: w["condition"] for w in result["weights"]},
            r2=result["evidence"]["weighted_r2"],
            local_error=abs(result["surrogate_prediction"] - result["model_prediction"]),
        )


class Lime:
    """lime's LimeTabularExplainer on the same reference rows and model."""

    def __init__(self, model: LoadedModel, seed: int, fix_single_value_bins: bool = False) -> None:
        self.model = model
        self.features = model.manifest.features
        self.categorical = [
            j for j, f in enumerate(self.features) if f.type is not FeatureType.numeric
        ]
        self.categories = {
            j: np.asarray(self.features[j].categories, dtype=object) for j in self.categorical
        }
        self.timer = Timer(self._predict)
        self.explainer = LimeTabularExplainer(
            self.encode(model.reference),
            mode="classification",
            feature_names=model.manifest.feature_names,
            categorical_features=self.categorical,
            categorical_names={j: list(c) for j, c in self.categories.items()},
            class_names=[model.manifest.unfavourable_class, model.manifest.favourable_class],
            discretize_continuous=True,
            discretizer="quartile",
            random_state=seed,
        )
        if fix_single_value_bins:
            self._fix_single_value_bins()

    def single_value_bins(self) -> list[str]:
        """Bins of one data value, which lime 0.2.0.1 samples as the value's z-score
        ((min - mean) / std, i.e. 0) instead of the value itself."""
        discretizer = self.explainer.discretizer
        found = []
        for j in discretizer.lambdas:
            for b, (low, high) in enumerate(
                zip(discretizer.mins[j], discretizer.maxs[j], strict=True)
            ):
                sampled = b in self.explainer.feature_values[j]  # bins lime can draw
                if sampled and low == high:
                    drawn = discretizer.get_undiscretize_values(j, np.array([b]))[0]
                    if drawn != low:
                        found.append(
                            f"`{discretizer.names[j][b]}` (every reference value in it "
                            f"is {low:g}; lime samples {drawn:g})"
                        )
        return found

    def _fix_single_value_bins(self) -> None:
        discretizer = self.explainer.discretizer
        stock = discretizer.get_undiscretize_values

        def fixed(feature: int, values: np.ndarray) -> np.ndarray:
            out = stock(feature, values)
            low = np.array(discretizer.mins[feature])[values]
            high = np.array(discretizer.maxs[feature])[values]
            out[low == high] = low[low == high]
            return out

        discretizer.get_undiscretize_values = fixed

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for j, feature in enumerate(self.features):
            if j in self.categories:
                index = {c: k for k, c in enumerate(self.categories[j])}
                columns.append(np.array([index[v] for v in frame[feature.name]], dtype=float))
            else:
                columns.append(frame[feature.name].to_numpy(dtype=float))
        return np.column_stack(columns)

    def _predict(self, data: np.ndarray) -> np.ndarray:
        columns = {}
        for j, feature in enumerate(self.features):
            if j in self.categories:
                columns[feature.name] = self.categories[j][data[:, j].astype(int)]
            else:
                columns[feature.name] = data[:, j]
        p = self.model.predictor.probability(pd.DataFrame(columns))
        return np.column_stack([1.0 - p, p])

    def explain(self, frame: pd.DataFrame, seed: int) -> Explained:
        del seed  # lime draws from the explainer's random state, seeded at construction
        explanation = self.explainer.explain_instance(
            self.encode(frame)[0], self.timer, labels=(1,),
            num_features=NUM_FEATURES, num_samples=SAMPLES,
        )  # fmt: skip
        names = self.model.manifest.feature_names
        pairs = explanation.as_map()[1]
        texts = [text for text, _ in explanation.as_list(label=1)]
        return Explained(
            weights={names[j]: float(w) for j, w in pairs},
            conditions={names[j]: text for (j, _), text in zip(pairs, texts, strict=True)},
            r2=float(explanation.score),
            local_error=abs(
                float(np.ravel(explanation.local_pred)[0]) - float(explanation.predict_proba[1])
            ),
        )


# ------------------------------------------------------------------------ measurement
def measure(
    model: LoadedModel, frame: pd.DataFrame, repeats: int, log: Callable[[str], None]
) -> dict[str, Run]:
    """Per repeat, each applicant is explained by the three implementations in turn, so a
    change of load on the shared machine hits all three alike."""
    runs = {name: Run() for name in (*IMPLEMENTATIONS, FIXED)}
    rows = [frame.iloc[[i]].reset_index(drop=True) for i in range(len(frame))]
    for repeat in range(repeats):
        # Built per repeat: lime is seeded at construction; repeat r uses seed r everywhere.
        built: dict[str, Service | Lime] = {
            "service": Service(model, gather_design=True),
            "service (plain path)": Service(model, gather_design=False),
            "lime": Lime(model, seed=repeat),
            FEW: Service(model, gather_design=True, samples=FEW_SAMPLES),
        }
        for implementation in built.values():
            implementation.explain(rows[0], seed=10**6)  # warm-up (not counted)
            implementation.timer.total = 0.0
        seconds = {name: [] for name in built}
        explained: dict[str, list[Explained]] = {name: [] for name in built}
        for i, row in enumerate(rows):
            for name, implementation in built.items():
                start = time.perf_counter()
                explained[name].append(implementation.explain(row, seed=repeat * 1000 + i))
                seconds[name].append(time.perf_counter() - start)
        for name, implementation in built.items():
            runs[name].seconds.append(seconds[name])
            runs[name].model_seconds.append(implementation.timer.total)
            runs[name].explained.append(explained[name])
        log(
            f"  repeat {repeat + 1}/{repeats}: "
            + ", ".join(f"{n} {np.mean(t) * 1e3:.1f} ms" for n, t in seconds.items())
        )
    # Untimed: lime with its single-value-bin sampling fixed, seed 0 as in repeat 0.
    fixed = Lime(model, seed=0, fix_single_value_bins=True)
    fixed.explain(rows[0], seed=10**6)
    runs[FIXED].explained.append([fixed.explain(row, seed=0) for row in rows])
    runs[FIXED].notes = Lime(model, seed=0).single_value_bins()
    return runs


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def top(weights: dict[str, float], k: int) -> set[str]:
    return set(sorted(weights, key=lambda n: -abs(weights[n]))[:k])


def normalise(condition: str) -> str:
    text = re.sub(r"\s*=\s*", "=", condition)
    return NUMBER.sub(lambda m: f"{float(m[0]):.2f}", text)


def agreement(left: list[Explained], right: list[Explained]) -> dict[str, float]:
    selected, top_k, rho, signs, same_condition = [], [], [], [], []
    for a, b in zip(left, right, strict=True):
        selected.append(jaccard(set(a.weights), set(b.weights)))
        top_k.append(jaccard(top(a.weights, TOP), top(b.weights, TOP)))
        common = sorted(set(a.weights) & set(b.weights))
        if len(common) >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = spearmanr([a.weights[n] for n in common], [b.weights[n] for n in common])[0]
            if np.isfinite(r):
                rho.append(float(r))
        signs += [np.sign(a.weights[n]) == np.sign(b.weights[n]) for n in common]
        same_condition += [normalise(a.conditions[n]) == normalise(b.conditions[n]) for n in common]
    return {
        "jaccard": float(np.mean(selected)),
        "jaccard_min": float(np.min(selected)),
        "top_jaccard": float(np.mean(top_k)),
        "spearman": float(np.mean(rho)) if rho else float("nan"),
        "spearman_median": float(np.median(rho)) if rho else float("nan"),
        "signs": float(np.mean(signs)) if signs else float("nan"),
        "conditions": float(np.mean(same_condition)) if same_condition else float("nan"),
    }


def summarise(runs: dict[str, Run], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"timing": {}, "fit": {}}
    for name in IMPLEMENTATIONS:
        run = runs[name]
        ms = [float(np.mean(s)) * 1e3 for s in run.seconds]
        model_ms = [s / n * 1e3 for s in run.model_seconds]
        first = run.explained[0]
        paired = np.array(runs["lime"].seconds) / np.array(run.seconds)
        out["timing"][name] = {
            "ms": float(np.median(ms)),
            "ms_runs": ms,
            "model_ms": float(np.median(model_ms)),
            "paired_ratio": float(np.median(paired)),
        }
        r2 = [e.r2 for e in first]
        out["fit"][name] = {
            "r2_mean": float(np.mean(r2)),
            "r2_median": float(np.median(r2)),
            "r2_min": float(np.min(r2)),
            "local_error": float(np.mean([e.local_error for e in first])),
        }
    lime_ms = out["timing"]["lime"]["ms"]
    for name in IMPLEMENTATIONS:
        out["timing"][name]["ratio"] = lime_ms / out["timing"][name]["ms"]
    service, plain, lime, few = (runs[k].explained for k in IMPLEMENTATIONS)
    out["agreement"] = {"service vs lime": agreement(service[0], lime[0])}
    out["agreement"][f"{FEW} vs lime"] = agreement(few[0], lime[0])
    fixed = runs[FIXED].explained[0]
    out["agreement"][f"service vs {FIXED}"] = agreement(service[0], fixed)
    out["fixed_r2_mean"] = float(np.mean([e.r2 for e in fixed]))
    out["single_value_bins"] = runs[FIXED].notes
    if len(lime) > 1:
        out["agreement"]["lime vs lime (other seed)"] = agreement(lime[0], lime[1])
        out["agreement"]["service vs service (other seed)"] = agreement(service[0], service[1])
    out["paired_r2_difference"] = float(
        np.mean([a.r2 - b.r2 for a, b in zip(service[0], lime[0], strict=True)])
    )
    out["plain_path_max_weight_difference"] = max(
        max(abs(a.weights[k] - b.weights.get(k, np.inf)) for k in a.weights)
        for run_a, run_b in zip(service, plain, strict=True)
        for a, b in zip(run_a, run_b, strict=True)
    )
    return out


# ------------------------------------------------------------------------ report
def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], n: int) -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in VERSIONS)
    lines = [
        "# LIME: the service's implementation vs the `lime` package",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{args.command}`",
        f"- machine: {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"{versions}; one BLAS/OpenMP thread",
        f"- data: the first {n} applicants of each model's hold-out evaluation data; "
        f"{args.repeats} repeats, the implementations interleaved applicant by applicant in "
        "each; times are medians over repeats of the mean per explanation (one applicant "
        "per call, as a single-applicant request)",
        f"- settings on both sides: {SAMPLES} samples (instance included), quartile bins of "
        f"the 200 reference rows, kernel width 0.75·√20 = {0.75 * 20**0.5:.3f}, "
        f"{NUM_FEATURES} features (lime's 'auto' = highest weights), weighted Ridge(alpha=1) "
        "on P(favourable class)",
        "- *service*: `LimeExplainer` on its default path (samples' design matrix gathered "
        "from the reference rows' encoded columns, proved equal to the model's own output at "
        "construction); *service (plain path)*: the same with `gather_design=False`, the "
        "sample frame through `predictor.output`; *lime*: `LimeTabularExplainer."
        "explain_instance` with a `predict_fn` that decodes lime's array into the typed "
        "frame and calls `predictor.probability`; "
        f"*{FEW}*: the service's default path with {FEW_SAMPLES} samples, NOT at equal "
        "sample count: shown only to price what fewer samples would buy",
        "",
        "## Speed and surrogate fit",
        "",
        "| model | implementation | ms / explanation | of which model calls | "
        "speed-up vs lime | paired speed-up | weighted R² mean (median, min) | "
        "mean abs(surrogate(x) − f(x)) |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for model, r in results.items():
        for name in IMPLEMENTATIONS:
            t, f = r["timing"][name], r["fit"][name]
            lines.append(
                f"| {model} | {name} | {t['ms']:.1f} | {t['model_ms']:.1f} | "
                f"{t['ratio']:.1f}× | {t['paired_ratio']:.1f}× | "
                f"{f['r2_mean']:.3f} ({f['r2_median']:.3f}, "
                f"{f['r2_min']:.3f}) | {f['local_error']:.4f} |"
            )
    lines += [
        "",
        "*speed-up vs lime*: ratio of the medians; *paired speed-up*: median over every "
        "(repeat, applicant) of lime's time over this implementation's time for the same "
        "applicant, measured back to back. Per-repeat ms / explanation: "
        + "; ".join(
            f"{model} {name}: " + ", ".join(f"{v:.1f}" for v in r["timing"][name]["ms_runs"])
            for model, r in results.items()
            for name in IMPLEMENTATIONS
        )
        + ".",
        "",
        "## Agreement with lime",
        "",
        f"Over the {n} applicants (repeat 0; the seed-vs-seed rows compare repeat 0 with "
        "repeat 1 of the same implementation and are the noise floor).",
        "",
        f"| model | pair | Jaccard of the {NUM_FEATURES} selected features mean (min) | "
        f"Jaccard of top {TOP} by abs(weight) | Spearman of common features' weights "
        "mean (median) | same sign | same condition |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for model, r in results.items():
        for pair, a in r["agreement"].items():
            lines.append(
                f"| {model} | {pair} | {a['jaccard']:.3f} ({a['jaccard_min']:.2f}) | "
                f"{a['top_jaccard']:.3f} | {a['spearman']:.3f} ({a['spearman_median']:.3f}) | "
                f"{a['signs']:.3f} | {a['conditions']:.3f} |"
            )
    lines += [""]
    for model, r in results.items():
        lines.append(
            f"- {model}: mean paired weighted-R² difference service − lime "
            f"{r['paired_r2_difference']:+.4f} (mean R² of lime with single-value bins fixed: "
            f"{r['fixed_r2_mean']:.3f}); largest weight difference between the "
            f"service's two paths {r['plain_path_max_weight_difference']:.1e}."
        )
    lines += [
        "",
        f"*{FIXED}*: lime (seed 0, untimed) with one change: a quartile bin holding a single "
        "reference value is sampled as that value. lime 0.2.0.1 samples such a bin as the "
        "value's z-score within the bin, i.e. 0, a value absent from the data: "
        + "; ".join(
            f"{m}: " + (", ".join(r["single_value_bins"]) or "none") for m, r in results.items()
        )
        + ". The service samples reference values, so it has no such case.",
    ]
    ratios = {m: r["timing"]["service"]["ratio"] for m, r in results.items()}
    plain = {m: r["timing"]["service (plain path)"]["ratio"] for m, r in results.items()}
    floor = {
        m: r["timing"]["lime"]["ms"] / r["timing"]["service"]["model_ms"]
        for m, r in results.items()
    }
    met = [m for m, v in ratios.items() if v >= TARGET]
    verdict = (
        "met on both models"
        if len(met) == len(ratios)
        else f"met on {', '.join(met)} only"
        if met
        else "NOT met"
    )
    lines += [
        "",
        "## Verdict",
        "",
        f"- The ≥{TARGET:.0f}× target at equal sample count ({SAMPLES}) is **{verdict}**: "
        + ", ".join(f"{m} {v:.1f}×" for m, v in ratios.items())
        + " on the service's default path, with the same surrogate fit (weighted R² above).",
        "- The bound is the model itself: 5000 predictions cost the service "
        + ", ".join(
            f"{r['timing']['service']['model_ms']:.1f} ms ({m})" for m, r in results.items()
        )
        + " on the gathered design matrix, so no implementation calling the model on "
        f"{SAMPLES} samples can be more than "
        + ", ".join(f"{v:.1f}×" for v in floor.values())
        + " faster than lime here; what LIME itself adds (sampling, kernel, selection, fit) "
        "is the rest of the service's time.",
        "- Forced onto the plain path (models without a column-separable scikit-learn design: "
        "boosters, custom preprocessors), the speed-up is "
        + ", ".join(f"{m} {v:.1f}×" for m, v in plain.items())
        + ": encoding 5000 sample rows and predicting is most of both sides' time.",
        f"- With {FEW_SAMPLES} samples instead of {SAMPLES} the service is "
        + ", ".join(f"{m} {r['timing'][FEW]['ratio']:.1f}×" for m, r in results.items())
        + " faster than lime at 5000, with a similar in-sample weighted R² but noisier "
        "features: Jaccard of the selected features vs lime "
        + ", ".join(
            f"{m} {r['agreement'][f'{FEW} vs lime']['jaccard']:.2f} (5000 samples: "
            f"{r['agreement']['service vs lime']['jaccard']:.2f})"
            for m, r in results.items()
        )
        + ". That is a different trade-off, not the target's equal-fit comparison.",
        "- Agreement: read the service-vs-lime rows against the lime-vs-lime noise floor "
        "(the other-seed rows). The samples differ by design: inside a numeric's quartile "
        "bin lime draws from a truncated normal fitted to the bin (and 0 for single-value "
        "bins, above), the service draws an actual reference value (the same bin "
        "frequencies; values stay in the data's support, integers stay integers). The "
        f"service-vs-'{FIXED}' rows show how much of the remaining difference that one "
        "lime defect accounts for.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10 applicants, 2 repeats")
    parser.add_argument("--out", help=f"write the report here (full run: {OUT})")
    args = parser.parse_args()
    args.command = "python bench/bench_lime.py " + shlex.join(sys.argv[1:])
    args.command = args.command.strip()
    if args.quick:
        args.applicants, args.repeats = 10, 2
    elif args.out is None:
        args.out = str(OUT)

    store = ModelStore(ROOT / "models")
    store.scan()
    results = {}
    started = time.perf_counter()
    for name in MODELS:
        version = store.get(name)
        model = LoadedModel.load(version)
        evaluation = version.manifest.evaluation_data
        assert evaluation is not None
        frame = read_rows(version.file(evaluation.path), version.manifest).iloc[: args.applicants]
        print(f"{name}: {len(frame)} applicants", flush=True)
        runs = measure(model, frame, args.repeats, lambda s: print(s, flush=True))
        results[name] = summarise(runs, len(frame))
    text = report(args, results, args.applicants)
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
