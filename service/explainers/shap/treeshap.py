"""The native interventional TreeSHAP engine: Shapley values per raw feature of the trees'
sum, against a background summarised once per leaf (see ``kernels``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from service.explainers.shap import kernels
from service.explainers.shap.attribution import Attributions
from service.explainers.shap.layout import MAX_PATH_PLAYERS
from service.explainers.shap.native import NativeTrees
from service.registry.predictors import Predictor

COEF_A, COEF_B = kernels.coefficients(MAX_PATH_PLAYERS)


class NativeTreeShap:
    """Exact interventional Shapley values of the model's output in its trees' native
    space (log-odds for boosters, probability for forests of classifiers, raw for
    regressors); the players are the raw features."""

    def __init__(self, trees: NativeTrees, predictor: Predictor, background: pd.DataFrame) -> None:
        self.trees, self.predictor = trees, predictor
        self.layout = trees.layout
        self.n_players = len(predictor.manifest.features)
        design = trees.design(predictor, background)
        layout = self.layout
        passed = kernels.passed_players(design, *layout.path_arrays(), *layout.node_arrays())
        start, sets, counts = kernels.histogram(passed, layout.player_start)
        self.hist_start, self.hist_sets = start, sets
        self.hist_weight = counts / float(design.shape[0])
        self.rows = design.shape[0]
        sums, _ = trees.raw(design)
        self.base_value = float(np.mean(sums))

    @property
    def patterns(self) -> int:
        """Distinct (leaf, background pattern) pairs: the work per applicant."""
        return int(self.hist_sets.shape[0])

    def explain(self, frame: pd.DataFrame) -> Attributions:
        return Attributions(values=self.explain_design(
            self.trees.design(self.predictor, frame)), base_value=self.base_value)  # fmt: skip

    def explain_design(self, design: np.ndarray) -> np.ndarray:
        """Shapley values (rows, players) of an already prepared design matrix."""
        layout = self.layout
        return kernels.interventional(
            np.ascontiguousarray(design, dtype=np.float64), self.n_players,
            layout.leaf_value, *layout.path_arrays(), layout.player_start, layout.players,
            self.hist_start, self.hist_sets, self.hist_weight, COEF_A, COEF_B,
            *layout.node_arrays(),
        )  # fmt: skip
