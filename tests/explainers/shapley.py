"""Brute-force interventional Shapley values over raw features: the ground truth."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd


def exact_shapley(
    f: Callable[[pd.DataFrame], np.ndarray], row: pd.DataFrame, background: pd.DataFrame
) -> tuple[np.ndarray, float]:
    """(phi per feature, base value) by enumerating every coalition.

    v(S) = mean over background rows b of f(x_S, b_rest); phi_j is the Shapley-weighted
    sum of v(S + j) - v(S).
    """
    names = list(row.columns)
    m = len(names)
    value: dict[frozenset[int], float] = {}
    for size in range(m + 1):
        for subset in itertools.combinations(range(m), size):
            hybrid = background.copy()
            for j in subset:
                hybrid[names[j]] = row[names[j]].iloc[0]
            value[frozenset(subset)] = float(np.mean(f(hybrid)))
    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[j] += weight * (value[s | {j}] - value[s])
    return phi, value[frozenset()]
