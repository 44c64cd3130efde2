"""Permutation importance per raw feature: the score drop when its column is shuffled."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score, roc_auc_score

from service.errors import ConflictError
from service.explainers.global_.associations import strong_associations
from service.explainers.global_.data import GlobalData
from service.explainers.global_.options import PermutationOptions
from service.registry.loaded import LoadedModel

Scorer = Callable[[Any, pd.DataFrame, np.ndarray], float]


def permutation_importance(
    model: LoadedModel, data: GlobalData, options: PermutationOptions, seed: int
) -> dict[str, Any]:
    """Mean ± std of the score drop over ``n_repeats`` seeded shuffles of each raw feature.

    scikit-learn's own implementation does the shuffling (columns of the raw frame), scored
    through the model's predictor, so the result equals sklearn on the bare model.
    """
    assert data.labels is not None
    predictor = model.predictor
    metric = options.metric or ("roc_auc" if predictor.is_classifier else "r2")
    scorer = make_scorer(model, metric)
    names = model.manifest.feature_names
    frame = data.frame[names]
    baseline = scorer(predictor, frame, data.labels)
    if not math.isfinite(baseline):
        raise ConflictError(
            f"{metric} is undefined on the {len(frame)} rows used ({data.source}), e.g. "
            "their labels hold one class only: permutation importance cannot be measured"
        )
    computed = sklearn_permutation_importance(
        _Fitted(), frame, data.labels, scoring=scorer, n_repeats=options.n_repeats,
        random_state=seed,
    )  # fmt: skip
    features = [
        {
            "feature": name,
            "mean": float(computed.importances_mean[j]),
            "std": float(computed.importances_std[j]),
            "importances": [float(v) for v in computed.importances[j]],
        }
        for j, name in enumerate(names)
    ]
    features.sort(key=lambda f: (-f["mean"], f["feature"]))
    return {
        "metric": metric,
        "baseline_score": baseline,
        "n_repeats": options.n_repeats,
        "seed": seed,
        "data": data.info(),
        "features": features,
        "warnings": strong_associations(frame, model.manifest, options.correlation_threshold),
    }


def make_scorer(model: LoadedModel, metric: str) -> Scorer:
    """A scikit-learn scorer ``(estimator, X, y) -> score`` (higher is better) over the
    model's predictor; ``y`` is 1 for the favourable class."""
    predictor = model.predictor
    threshold = model.manifest.decision_threshold

    def score(_: Any, frame: pd.DataFrame, y: np.ndarray) -> float:
        output = predictor.probability(frame)
        if metric == "roc_auc":
            return float(roc_auc_score(y, output))
        if metric == "accuracy":
            return float(accuracy_score(y, (output >= threshold).astype(int)))
        if metric == "neg_log_loss":
            return -float(log_loss(y, np.clip(output, 1e-15, 1 - 1e-15), labels=[0, 1]))
        if metric == "r2":
            return float(r2_score(y, output))
        return -float(mean_squared_error(y, output))

    return score


class _Fitted:
    """The estimator sklearn requires (it must have ``fit``); the scorer calls the model."""

    def fit(self, *_: Any) -> _Fitted:
        return self
