"""Column-level SHAP values grouped to raw features, and what a SHAP algorithm returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Attributions:
    """SHAP values of n rows over the model's raw features, in one output space."""

    values: np.ndarray  # (n, n_features)
    base_value: float
    std_error: np.ndarray | None = None  # (n, n_features) for sampled estimates


def group_columns(
    values: np.ndarray, column_features: Sequence[int], n_features: int
) -> np.ndarray:
    """Sum design-column values into their raw features: (n, n_columns) -> (n, n_features)."""
    owner = np.asarray(column_features)
    if values.shape[1] != owner.size:
        raise ValueError(f"{values.shape[1]} SHAP columns but {owner.size} mapped columns")
    grouped = np.zeros((values.shape[0], n_features))
    np.add.at(grouped.T, owner, values.T)
    return grouped
