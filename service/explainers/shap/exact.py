"""Exact interventional Shapley values by enumerating every coalition (few features).

v(S) = mean over background rows b of f(x_S, b_rest); phi_j = sum over S not containing
j of |S|! (M-|S|-1)! / M! * (v(S+j) - v(S)). Costs 2^M x background model evaluations.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from service.explainers.shap.attribution import Attributions
from service.registry.predictors import Predictor

MAX_FEATURES = 12


class ExactShap:
    def __init__(self, predictor: Predictor, background: pd.DataFrame, space: str) -> None:
        n_features = len(predictor.manifest.features)
        if n_features > MAX_FEATURES:
            raise ValueError(
                f"exact enumeration needs at most {MAX_FEATURES} features; "
                f"this model has {n_features}"
            )
        self.predictor, self.space = predictor, space
        self.background = background.reset_index(drop=True)
        self.rows = len(self.background)
        masks = np.arange(2**n_features)
        # in_coalition[s, j]: feature j is taken from the instance in coalition s.
        self.in_coalition = ((masks[:, None] >> np.arange(n_features)) & 1).astype(bool)
        sizes = self.in_coalition.sum(axis=1)
        self.weights = np.array(
            [
                math.factorial(s) * math.factorial(n_features - s - 1) / math.factorial(n_features)
                if s < n_features
                else 0.0
                for s in sizes
            ]
        )
        self.base_value = float(np.mean(predictor.output(self.background, space)))

    def explain(self, frame: pd.DataFrame) -> Attributions:
        values = np.vstack([self._row(frame.iloc[[i]]) for i in range(len(frame))])
        return Attributions(values=values, base_value=self.base_value)

    def _row(self, row: pd.DataFrame) -> np.ndarray:
        n_coalitions, n_features = self.in_coalition.shape
        n_bg = self.rows
        take = np.repeat(self.in_coalition, n_bg, axis=0)
        hybrid = {}
        for j, name in enumerate(row.columns):
            background = np.tile(self.background[name].to_numpy(), n_coalitions)
            hybrid[name] = np.where(take[:, j], row[name].iloc[0], background)
        frame = pd.DataFrame(hybrid).astype(self.background.dtypes.to_dict())
        value = self.predictor.output(frame, self.space).reshape(n_coalitions, n_bg).mean(axis=1)
        phi = np.zeros(n_features)
        for j in range(n_features):
            without = ~self.in_coalition[:, j]
            with_j = np.flatnonzero(without) | (1 << j)
            phi[j] = np.sum(self.weights[without] * (value[with_j] - value[without]))
        return phi
