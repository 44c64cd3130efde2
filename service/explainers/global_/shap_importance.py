"""Global SHAP: mean |SHAP| per raw feature over many rows, with the beeswarm's points."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.explainers.global_.data import GlobalData
from service.explainers.shap import ShapExplainer
from service.jobs.keys import row_seed

SAMPLING_DEFAULT_ROWS = 50  # sampling SHAP costs seconds per row


def shap_importance(
    explainer: ShapExplainer, data: GlobalData, max_rows: int | None, seed: int
) -> dict[str, Any]:
    """Explain every row with the (warm) SHAP explainer and summarise per feature."""
    if max_rows is None and explainer.algorithm == "sampling":
        max_rows = SAMPLING_DEFAULT_ROWS
    data = data.sample(max_rows, seed)
    frame = data.frame
    explained = explainer.explain(frame, [row_seed(seed, i) for i in range(len(frame))])
    names = explainer.model.manifest.feature_names
    values = np.array(
        [[_by_feature(row)[name]["contribution"] for name in names] for row in explained]
    )
    mean_abs = np.abs(values).mean(axis=0)
    order = sorted(range(len(names)), key=lambda j: (-mean_abs[j], names[j]))
    features = []
    for j in order:
        column = frame[names[j]]
        features.append(
            {
                "feature": names[j],
                "mean_abs": float(mean_abs[j]),
                "mean": float(values[:, j].mean()),
                "shap": [float(v) for v in values[:, j]],
                "values": [float(v) if isinstance(v, float) else str(v) for v in column],
            }
        )
    errors = [row["evidence"]["additivity_error"] for row in explained]
    return {
        "algorithm": explainer.algorithm,
        "implementation": explainer.implementation,
        "fallback_reason": explainer.fallback_reason,
        "background": explainer.background.summary(),
        "output_space": explainer.space,
        "base_value": float(explained[0]["base_value"]) if explained else None,
        "max_additivity_error": float(max(errors)) if errors else None,
        "data": data.info(),
        "features": features,
    }


def _by_feature(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["feature"]: a for a in row["attributions"]}
