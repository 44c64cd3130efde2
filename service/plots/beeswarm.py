"""Beeswarm of global SHAP: one dot per row and feature, coloured by the feature's value."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from service.plots.render import figure, readable
from service.plots.sources import require_finite, space_label

BINS = 60
ROW_HEIGHT = 0.4


def beeswarm(section: dict[str, Any], top: int = 12) -> Figure:
    """The ``top`` features by mean |SHAP|, most important at the top."""
    features = section["features"][:top][::-1]
    require_finite("the beeswarm", [(f["feature"], v) for f in features for v in f["shap"]])
    fig = figure(8.5, 0.45 * len(features) + 1.6)
    ax = fig.add_subplot()
    cmap = colormaps["coolwarm"]
    for row, feature in enumerate(features):
        shap = np.asarray(feature["shap"], dtype=float)
        colour = value_rank(feature["values"])
        ax.scatter(shap, row + swarm_offsets(shap), c=cmap(colour), s=9, linewidths=0)
    ax.set_yticks(range(len(features)), [readable(f["feature"]) for f in features])
    ax.axvline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel(f"SHAP value ({space_label(section['output_space'])})")
    data = section["data"]
    ax.set_title(f"SHAP values\n{data['rows']} rows: {data['source']}")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, ticks=[0, 1], aspect=40)
    bar.ax.set_yticklabels(["low", "high"])
    bar.set_label("feature value (categories: in order of first appearance)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def value_rank(values: list[Any]) -> np.ndarray:
    """Each value's position in [0, 1]: numeric by rank, categories by first appearance."""
    if all(isinstance(v, (int, float)) for v in values):
        numbers = np.asarray(values, dtype=float)
        low, high = float(numbers.min()), float(numbers.max())
        return (numbers - low) / (high - low) if high > low else np.full(len(numbers), 0.5)
    order = {v: i for i, v in enumerate(dict.fromkeys(values))}
    span = max(len(order) - 1, 1)
    return np.array([order[v] / span for v in values])


def swarm_offsets(shap: np.ndarray) -> np.ndarray:
    """Vertical offsets that spread dots sharing an x-bin: 0, +d, -d, +2d, ... (deterministic)."""
    if len(shap) == 0:
        return shap
    low, high = float(shap.min()), float(shap.max())
    width = (high - low) / BINS or 1.0
    bins = np.floor((shap - low) / width).astype(int)
    offsets = np.zeros(len(shap))
    crowd = np.bincount(bins).max()
    step = min(ROW_HEIGHT / max(crowd / 2, 1), 0.08)
    seen: dict[int, int] = {}
    for i in np.argsort(shap, kind="stable"):
        k = seen.get(int(bins[i]), 0)
        seen[int(bins[i])] = k + 1
        offsets[i] = step * ((k + 1) // 2) * (1 if k % 2 else -1)
    return offsets
