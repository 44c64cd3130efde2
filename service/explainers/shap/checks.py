"""Self-checks an exact SHAP engine must pass on a version's reference rows before it is
used: additivity, agreement with brute-force Shapley values, agreement with shap."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.registry.loaded import LoadedModel

PAIR_FEATURES = 8  # brute force over at most 2**8 coalitions per pair
VERIFY_ROWS = 5
PAIRS = 3


class CheckFailed(ValueError):
    """The engine disagreed with what it was checked against."""


@dataclass(frozen=True)
class Check:
    """The worst row of a check: its error and the tolerance it had to meet."""

    name: str
    error: float
    tolerance: float

    @classmethod
    def of(cls, name: str, error: np.ndarray, tolerance: np.ndarray) -> Check:
        error, tolerance = np.ravel(error), np.broadcast_to(tolerance, np.shape(error)).ravel()
        worst = int(np.argmax(error / np.maximum(tolerance, 1e-300)))
        check = cls(name, float(error[worst]), float(tolerance[worst]))
        if not np.all(error <= tolerance):
            raise CheckFailed(
                f"{name}: error {check.error:.3g} exceeds the tolerance {check.tolerance:.3g}"
            )
        return check


def probe_rows(model: LoadedModel) -> pd.DataFrame:
    """The reference rows every self-check explains."""
    return model.reference.iloc[:VERIFY_ROWS]


def worst(checks: list[Check]) -> Check:
    """The check closest to failing, reported as the engine's self-check."""
    return max(checks, key=lambda c: c.error / c.tolerance if c.tolerance > 0 else math.inf)


Explain = Callable[[pd.DataFrame, pd.DataFrame], tuple[np.ndarray, float]]


def brute_force_pairs(
    explain: Explain,
    output: Callable[[pd.DataFrame], np.ndarray],
    tolerance: Callable[[pd.DataFrame], np.ndarray],
    probe: pd.DataFrame,
    background: pd.DataFrame,
) -> Check:
    """Against brute-force Shapley values on pairs. Pair i: one background row r and a row
    x equal to r but for up to ``PAIR_FEATURES`` features taken from probe row i (a
    different block of features for each pair). Features x and r share are null players,
    so enumerating the coalitions of the others gives the exact values of the game
    v(S) = f(x_S, r_rest) that ``explain(x, background=[r])`` must return."""
    names = list(probe.columns)
    errors, tolerances = [], []
    for i in range(min(PAIRS, len(probe))):
        r = background.iloc[[i % len(background)]].reset_index(drop=True)
        x = r.copy()
        start = (i * PAIR_FEATURES) % len(names)
        block = [names[(start + k) % len(names)] for k in range(min(PAIR_FEATURES, len(names)))]
        for name in block:
            x[name] = probe[name].iloc[i]
        moved = [j for j, n in enumerate(names) if x[n].iloc[0] != r[n].iloc[0]]
        if not moved:
            continue
        masks = np.arange(2 ** len(moved))
        hybrid = pd.concat([r] * len(masks), ignore_index=True)
        for k, j in enumerate(moved):
            take = (masks >> k) & 1 == 1
            hybrid[names[j]] = np.where(take, x[names[j]].iloc[0], hybrid[names[j]])
        hybrid = hybrid.astype(r.dtypes.to_dict())
        values = output(hybrid)
        truth = np.zeros(len(names))
        m = len(moved)
        for k, j in enumerate(moved):
            without = masks[(masks >> k) & 1 == 0]
            sizes = np.array([bin(s).count("1") for s in without])
            weights = np.array(
                [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in sizes]
            )
            truth[j] = np.sum(weights * (values[without | (1 << k)] - values[without]))
        got, _ = explain(x, r)
        errors.append(np.abs(got[0] - truth))
        tolerances.append(np.full(len(names), 2 * float(np.max(tolerance(hybrid)))))
    if not errors:
        return Check("brute-force Shapley on reference pairs", 0.0, 1.0)
    return Check.of(
        "brute-force Shapley on reference pairs", np.concatenate(errors), np.concatenate(tolerances)
    )


def additivity(
    values: np.ndarray, base_value: float, model_output: np.ndarray, tolerance: np.ndarray
) -> Check:
    error = np.abs(model_output - base_value - values.sum(axis=1))
    return Check.of("additivity", error, tolerance)
