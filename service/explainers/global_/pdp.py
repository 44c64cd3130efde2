"""Partial dependence (the average curve) and individual conditional expectation (one curve
per row): the model's output as one feature is set to each point of a grid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from service.explainers.global_.data import GlobalData
from service.registry.manifest import Feature, FeatureType

PERCENTILES = (0.05, 0.95)
Output = Callable[[pd.DataFrame], np.ndarray]


def grid(column: pd.Series, feature: Feature, resolution: int) -> list[Any]:
    """Numeric: the distinct values if few, else quantiles from 5% to 95% (deduplicated);
    categorical and ordinal: each category of the manifest."""
    if feature.type is not FeatureType.numeric:
        return list(feature.categories or [])
    values = column.to_numpy(dtype=float)
    distinct = np.unique(values)
    if len(distinct) <= resolution:
        return [float(v) for v in distinct]
    quantiles = np.quantile(values, np.linspace(*PERCENTILES, resolution))
    return [float(v) for v in np.unique(quantiles)]


def curves(output: Output, frame: pd.DataFrame, feature: str, points: list[Any]) -> np.ndarray:
    """(rows, grid) outputs with ``feature`` set to each grid point in every row."""
    stacked = pd.concat([frame] * len(points), ignore_index=True)
    column = np.repeat(np.asarray(points, dtype=object), len(frame))
    if pd.api.types.is_float_dtype(frame[feature]):
        column = column.astype(float)
    stacked[feature] = column
    return output(stacked).reshape(len(points), len(frame)).T


def dependence(
    output: Output,
    data: GlobalData,
    features: list[Feature],
    resolution: int,
    individual: bool,
) -> list[dict[str, Any]]:
    """Per feature: its grid and the average curve; with ``individual`` the ICE curves too."""
    found = []
    for feature in features:
        points = grid(data.frame[feature.name], feature, resolution)
        ice = curves(output, data.frame, feature.name, points)
        item: dict[str, Any] = {
            "feature": feature.name,
            "kind": "numeric" if feature.type is FeatureType.numeric else "categorical",
            "grid": points,
            "average": [float(v) for v in ice.mean(axis=0)],
        }
        if individual:
            item["curves"] = [[float(v) for v in row] for row in ice]
        found.append(item)
    return found
