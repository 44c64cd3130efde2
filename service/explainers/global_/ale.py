"""Accumulated local effects (Apley & Zhu 2020) of a numeric feature, centred.

Within each quantile bin the feature is moved from the bin's lower to its upper edge for
the rows that fall in it; the mean output change is accumulated over bins. Unlike partial
dependence, rows are only moved within their own neighbourhood, so correlated features do
not make the model score impossible combinations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

Output = Callable[[pd.DataFrame], np.ndarray]


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """The distinct values when there are few, else deduplicated quantile edges."""
    distinct = np.unique(values)
    if len(distinct) <= bins + 1:
        return distinct
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))


def ale(output: Output, frame: pd.DataFrame, feature: str, bins: int) -> dict[str, Any]:
    """Centred ALE of ``feature`` at the bin edges, with the rows per bin."""
    x = frame[feature].to_numpy(dtype=float)
    edges = bin_edges(x, bins)
    if len(edges) < 2:
        return {"feature": feature, "edges": [float(edges[0])], "values": [0.0], "counts": []}
    # bin k (1-based) holds edges[k-1] < x <= edges[k]; the first also holds edges[0]
    index = np.clip(np.searchsorted(edges, x, side="left"), 1, len(edges) - 1)
    lower, upper = frame.copy(), frame.copy()
    lower[feature], upper[feature] = edges[index - 1], edges[index]
    scored = output(pd.concat([lower, upper], ignore_index=True))
    change = scored[len(frame) :] - scored[: len(frame)]
    counts = np.bincount(index, minlength=len(edges))[1:]
    totals = np.bincount(index, weights=change, minlength=len(edges))[1:]
    local = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
    accumulated = np.concatenate([[0.0], np.cumsum(local)])
    # centre: the mean effect over the data is zero (each bin at its mid-point)
    middles = (accumulated[:-1] + accumulated[1:]) / 2
    centred = accumulated - float(np.sum(counts * middles) / np.sum(counts))
    return {
        "feature": feature,
        "edges": [float(e) for e in edges],
        "values": [float(v) for v in centred],
        "counts": [int(c) for c in counts],
    }
