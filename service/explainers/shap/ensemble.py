"""One normalised representation of a tree ensemble, whatever library trained it.

Every split is reduced to the same rule on the design matrix the library sees:
numeric splits go left iff ``x <= threshold`` (strict ``<`` thresholds are moved one float
down), NaN and LightGBM's zero-as-missing go to a stored side, and categorical splits look
the integer code up in a per-node table of sides. Leaf values are scaled so that the sum
over trees, plus ``offset``, is the model's output for the favourable class in
``native_space``. The offset is calibrated on data afterwards (``with_offset``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

LEFT, RIGHT = 0, 1
FLOAT32_ROUNDOFF = 2.0**-24
FLOAT64_ROUNDOFF = 2.0**-53


class UnsupportedModel(ValueError):
    """The tree model uses something the normalised representation cannot express."""


@dataclass
class Tree:
    """One tree; node arrays are indexed locally, ``left == -1`` marks a leaf."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    nan_right: np.ndarray
    zero_missing: np.ndarray | None = None
    # categorical nodes: node -> side per integer code; codes past the table take
    # ``beyond_right``; codes below ``negative_below`` take ``negative_right``
    categories: dict[int, np.ndarray] = field(default_factory=dict)
    beyond_right: dict[int, int] = field(default_factory=dict)
    negative_right: dict[int, int] = field(default_factory=dict)
    negative_below: float = 0.0

    @classmethod
    def empty(cls, n_nodes: int) -> Tree:
        return cls(
            left=np.full(n_nodes, -1, dtype=np.int32),
            right=np.full(n_nodes, -1, dtype=np.int32),
            feature=np.full(n_nodes, -1, dtype=np.int32),
            threshold=np.zeros(n_nodes),
            value=np.zeros(n_nodes),
            nan_right=np.zeros(n_nodes, dtype=np.uint8),
        )


@dataclass(frozen=True)
class TreeEnsemble:
    """The trees of one model, the space their sum lives in, and its arithmetic."""

    trees: list[Tree]
    native_space: str  # log_odds (margin), probability (averaged class fractions) or raw
    input_float32: bool  # the library casts its input to float32 before comparing
    roundoff: float  # unit roundoff of the library's own leaf sum
    library: str
    offset: float = 0.0
    # a library's own input step (HistGradientBoosting's category encoder): the matrix the
    # trees see, and for each of its columns the design column it comes from
    prepare: Callable[[np.ndarray], np.ndarray] | None = None
    columns: np.ndarray | None = None

    def with_offset(self, offset: float) -> TreeEnsemble:
        return replace(self, offset=offset)

    @property
    def n_trees(self) -> int:
        return len(self.trees)

    def design(self, matrix: np.ndarray) -> np.ndarray:
        """The design matrix as the library compares it (float32-rounded where it is)."""
        if self.prepare is not None:
            matrix = self.prepare(np.asarray(matrix, dtype=float))
        matrix = np.asarray(matrix, dtype=float)
        if self.input_float32:
            matrix = matrix.astype(np.float32).astype(np.float64)
        return np.ascontiguousarray(matrix)


def strict_to_inclusive(threshold: np.ndarray) -> np.ndarray:
    """``x < t`` as ``x <= t'`` for every float64 x: t' is the float just below t."""
    return np.nextafter(np.asarray(threshold, dtype=np.float64), -np.inf)


def gamma(n: int, roundoff: float) -> float:
    """Higham's bound factor for n floating-point additions: n u / (1 - n u)."""
    nu = n * roundoff
    return nu / (1.0 - nu) if nu < 1 else float("inf")
