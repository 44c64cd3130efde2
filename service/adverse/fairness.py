"""Fairness probe: would changing one protected feature alone change the decision?"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from service.registry.loaded import LoadedModel
from service.registry.manifest import Feature, FeatureType

MAX_INTEGER_VALUES = 200
GRID_POINTS = 41


def probe_values(model: LoadedModel, feature: Feature, current: Any) -> list[Any]:
    """Every other allowed value: each category, each whole number of an integer range,
    else an even grid over the range (or the reference's span)."""
    if feature.type is not FeatureType.numeric:
        assert feature.categories is not None
        return [c for c in feature.categories if c != str(current)]
    low, high = feature.range or (
        float(model.reference[feature.name].min()),
        float(model.reference[feature.name].max()),
    )
    if feature.integer and high - low <= MAX_INTEGER_VALUES:
        grid = np.arange(np.ceil(low), np.floor(high) + 1)
    else:
        grid = np.linspace(low, high, GRID_POINTS)
    return [float(v) for v in grid if float(v) != float(current)]


def fairness_probe(model: LoadedModel, applicant: pd.DataFrame, approved: bool) -> list[dict]:
    """Per protected feature: the values that, changed alone, flip ``approved``."""
    threshold = model.manifest.decision_threshold
    protected = [f for f in model.manifest.features if f.protected]
    variants, owners = [], []
    for feature in protected:
        values = probe_values(model, feature, applicant.iloc[0][feature.name])
        if not values:
            continue
        block = applicant.iloc[np.zeros(len(values), dtype=int)].reset_index(drop=True)
        block[feature.name] = pd.Series(values, dtype=applicant[feature.name].dtype)
        variants.append(block)
        owners.extend((feature.name, v) for v in values)
    flips: dict[str, list[Any]] = {f.name: [] for f in protected}
    tested: dict[str, int] = {f.name: 0 for f in protected}
    if variants:
        scores = model.predictor.probability(pd.concat(variants, ignore_index=True))
        for (name, value), score in zip(owners, scores, strict=True):
            tested[name] += 1
            if (score >= threshold) != approved:
                flips[name].append(_plain_value(value))
    return [
        {
            "feature": f.name,
            "value": _plain_value(applicant.iloc[0][f.name]),
            "values_tested": tested[f.name],
            "changes_decision": bool(flips[f.name]),
            "values": flips[f.name],
        }
        for f in protected
    ]


def _plain_value(value: Any) -> Any:
    return float(value) if isinstance(value, (float, int, np.number)) else str(value)
