"""Evidence across methods: agreement of their top features, and the deletion test.

Agreement compares the top-k features of each feature-ranking method (SHAP by
|contribution|, LIME by |weight|, Anchors by the features of its rule). The deletion test
replaces an explanation's top-k features by reference values one at a time and measures
the model's output drop (AOPC), beside the same for random feature orders: a positive gap
is evidence the ranking is informative.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from service.explainers.base import MethodOptions
from service.registry.loaded import LoadedModel

RANKED_METHODS = ("shap", "lime", "anchor")


def top_features(method: str, result: dict[str, Any], k: int) -> list[str]:
    """A method's most important features, best first (anchors: the rule's features)."""
    if method == "shap":
        return [a["feature"] for a in result["attributions"][:k]]
    if method == "lime":
        ranked = sorted(result["weights"], key=lambda w: -abs(w["weight"]))
        return list(dict.fromkeys(w["feature"] for w in ranked))[:k]
    if method == "anchor":
        return list(dict.fromkeys(c["feature"] for c in result["rule"]))
    return []


def agreement(per_method: dict[str, dict[str, Any]], k: int) -> dict[str, Any] | None:
    """Pairwise top-k overlap (Jaccard) and the features the methods disagree on."""
    tops = {m: top_features(m, r, k) for m, r in per_method.items() if m in RANKED_METHODS}
    if len(tops) < 2:
        return None
    pairs = []
    for first, second in itertools.combinations(sorted(tops), 2):
        a, b = set(tops[first]), set(tops[second])
        union = a | b
        pairs.append(
            {
                "methods": [first, second],
                "jaccard": len(a & b) / len(union) if union else 1.0,
                "shared": sorted(a & b),
                "only_first": sorted(a - b),
                "only_second": sorted(b - a),
            }
        )
    everywhere = set.intersection(*(set(t) for t in tops.values()))
    somewhere = set.union(*(set(t) for t in tops.values()))
    return {
        "k": k,
        "top_features": tops,
        "pairs": pairs,
        "mean_jaccard": float(np.mean([p["jaccard"] for p in pairs])),
        "agreed": sorted(everywhere),
        "disputed": sorted(somewhere - everywhere),
    }


class FaithfulnessOptions(MethodOptions):
    """The deletion test: how many top features, against how many random orders."""

    k: int = Field(5, ge=1, le=20)
    random_orders: int = Field(20, ge=1, le=200)


def deletion_order(method: str, result: dict[str, Any], toward: float) -> list[str] | None:
    """Features by how much they push the output toward the prediction (signed)."""
    if method == "shap":
        scored = [(a["feature"], a["contribution"]) for a in result["attributions"]]
    elif method == "lime":
        scored = [(w["feature"], w["weight"]) for w in result["weights"]]
    else:
        return None
    ranked = sorted(scored, key=lambda item: -toward * item[1])
    return list(dict.fromkeys(name for name, _ in ranked))


def faithfulness(
    model: LoadedModel,
    row: pd.DataFrame,
    method: str,
    result: dict[str, Any],
    options: FaithfulnessOptions,
    seed: int,
    reference_rows: int = 50,
) -> dict[str, Any] | None:
    """AOPC of deleting the method's top features vs random orders (higher = faster drop)."""
    space = result.get("output_space", "log_odds")
    k, random_orders = options.k, options.random_orders
    reference = model.reference
    if len(reference) > reference_rows:
        reference = reference.sample(reference_rows, random_state=0)
    reference = reference.reset_index(drop=True)
    names = model.manifest.feature_names
    predictor = model.predictor
    f_x = float(predictor.output(row, space)[0])
    baseline = float(np.mean(predictor.output(reference, space)))
    toward = 1.0 if f_x >= baseline else -1.0  # drops are measured toward the baseline
    ranking = deletion_order(method, result, toward)
    if ranking is None:
        return None
    k = min(k, len(ranking), len(names))

    def drops(order: list[str]) -> np.ndarray:
        frames = []
        for step in range(1, k + 1):
            hybrid = reference.copy()
            for name in names:
                if name not in order[:step]:
                    hybrid[name] = row[name].iloc[0]
            frames.append(hybrid)
        outputs = predictor.output(pd.concat(frames, ignore_index=True), space)
        means = outputs.reshape(k, len(reference)).mean(axis=1)
        return toward * (f_x - means)

    explained = drops(ranking[:k])
    rng = np.random.default_rng(seed)
    random_curves = np.array(
        [drops(list(rng.permutation(names)[:k])) for _ in range(random_orders)]
    )
    aopc = float(np.mean(np.concatenate([[0.0], explained])))
    random_aopc = float(
        np.mean(np.concatenate([np.zeros((random_orders, 1)), random_curves], axis=1))
    )
    return {
        "method": method,
        "k": k,
        "output_space": space,
        "ranking": ranking[:k],
        "drops": [float(d) for d in explained],
        "random_drops": [float(d) for d in random_curves.mean(axis=0)],
        "aopc": aopc,
        "random_aopc": random_aopc,
        "gap": aopc - random_aopc,
        "random_orders": random_orders,
        "reference_rows": len(reference),
        "seed": seed,
    }
