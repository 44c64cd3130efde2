"""Exact SHAP values of a model linear in its design matrix (interventional)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from service.explainers.shap.attribution import Attributions, group_columns
from service.explainers.shap.ensemble import FLOAT64_ROUNDOFF, gamma
from service.registry.predictors import Predictor


class LinearShap:
    """phi_j = sum over feature j's columns of coef_c * (x_c - mean_c over the reference)."""

    def __init__(self, predictor: Predictor, background: pd.DataFrame) -> None:
        view, design, columns = (
            predictor.linear_view(),
            predictor.design(background),
            predictor.column_features(),
        )
        if view is None or design is None or columns is None:
            raise ValueError("model offers no linear view")
        self.predictor, self.view, self.columns = predictor, view, columns
        self.mean = design.mean(axis=0)
        self.rows = design.shape[0]
        self.base_value = float(self.mean @ view.coef + view.intercept)

    def explain(self, frame: pd.DataFrame) -> Attributions:
        design = self.predictor.design(frame)
        assert design is not None
        values = (design - self.mean) * self.view.coef
        grouped = group_columns(values, self.columns, len(self.predictor.manifest.features))
        return Attributions(values=grouped, base_value=self.base_value)

    def tolerance(self, frame: pd.DataFrame) -> np.ndarray:
        """Float64 rounding bound of margin = design @ coef + intercept (the model's and
        ours), per row: one rounding per design column over the terms' magnitudes."""
        design = self.predictor.design(frame)
        assert design is not None
        coef = np.abs(self.view.coef)
        scale = np.abs(design) @ coef + np.abs(self.mean) @ coef + abs(self.view.intercept)
        return 4 * gamma(design.shape[1] + 2, FLOAT64_ROUNDOFF) * scale
