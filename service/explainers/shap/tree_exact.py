"""Exact Shapley values by enumerating every coalition over the parsed trees, for output
spaces that are not a sum of tree outputs (a booster's probability, a forest's log-odds):
the trees give the model's output on every hybrid row without calling the model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from service.explainers.shap import kernels, kernels_exact
from service.explainers.shap.attribution import Attributions
from service.explainers.shap.native import NativeTrees
from service.registry.predictors import Predictor

LINKS = {("log_odds", "probability"): 1, ("probability", "log_odds"): 2}


class TreeEnumeration:
    def __init__(
        self, trees: NativeTrees, predictor: Predictor, background: pd.DataFrame, space: str
    ) -> None:
        self.link = LINKS.get((trees.native_space, space), 0)
        if trees.native_space != space and not self.link:
            raise ValueError(f"no link from the trees' {trees.native_space} to {space}")
        self.trees, self.predictor, self.space = trees, predictor, space
        self.n_players = len(predictor.manifest.features)
        layout = trees.layout
        design = trees.design(predictor, background)
        passed = kernels.passed_players(design, *layout.path_arrays(), *layout.node_arrays())
        self.bg_passed = kernels_exact.to_global(passed, layout.player_start, layout.players)
        m = self.n_players
        self.weights = np.array(
            [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
            + [0.0]
        )
        self.rows = design.shape[0]
        sums, _ = trees.raw(design)
        self.base_value = float(np.mean(self.transform(sums)))

    def transform(self, native: np.ndarray) -> np.ndarray:
        if self.link == 1:
            return expit(native)
        if self.link == 2:
            return logit(np.clip(native, 1e-15, 1 - 1e-15))
        return native

    def tolerance(self, frame: pd.DataFrame) -> np.ndarray:
        """The trees' tolerance carried through the link (its derivative at the output)."""
        sums, magnitude = self.trees.raw(self.trees.design(self.predictor, frame))
        tolerance = self.trees.tolerance(magnitude)
        if self.link == 1:
            p = expit(sums)
            return tolerance * p * (1 - p) + 1e-15
        if self.link == 2:
            p = np.clip(sums, 1e-15, 1 - 1e-15)
            return tolerance / (p * (1 - p)) + 1e-15
        return tolerance

    def explain(self, frame: pd.DataFrame) -> Attributions:
        layout = self.trees.layout
        design = self.trees.design(self.predictor, frame)
        values = kernels_exact.enumerate_coalitions(
            design, self.n_players, self.trees.ensemble.offset, self.link, layout.leaf_value,
            *layout.path_arrays(), layout.player_start, layout.players, self.bg_passed,
            self.weights, *layout.node_arrays(),
        )  # fmt: skip
        return Attributions(values=values, base_value=self.base_value)
