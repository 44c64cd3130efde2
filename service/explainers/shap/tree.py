"""Interventional TreeSHAP through ``shap.TreeExplainer`` on the design matrix."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import shap

from service.explainers.shap.attribution import Attributions, group_columns
from service.registry.predictors import Predictor


class TreeShap:
    """Exact interventional Shapley values of the model's raw (margin) output."""

    def __init__(self, predictor: Predictor, background: pd.DataFrame) -> None:
        tree_model, design, columns = (
            predictor.tree_model(),
            predictor.design(background),
            predictor.column_features(),
        )
        if tree_model is None or design is None or columns is None:
            raise ValueError("model offers no tree view")
        self.predictor, self.columns = predictor, columns
        # An explicit masker: a bare array would be subsampled to 100 rows by shap.
        masker = shap.maskers.Independent(design, max_samples=design.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.explainer = shap.TreeExplainer(
                tree_model, data=masker, feature_perturbation="interventional", model_output="raw"
            )
        self.rows = design.shape[0]
        self.base_value = predictor.output_sign * _scalar(self.explainer.expected_value)

    def explain(self, frame: pd.DataFrame) -> Attributions:
        design = self.predictor.design(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw: Any = self.explainer.shap_values(design, check_additivity=False)
        values = np.asarray(raw[-1] if isinstance(raw, list) else raw, dtype=float)
        if values.ndim == 3:  # (n, columns, outputs) for some binary boosters
            values = values[:, :, -1]
        values = self.predictor.output_sign * values
        grouped = group_columns(values, self.columns, len(self.predictor.manifest.features))
        return Attributions(values=grouped, base_value=self.base_value)


def _scalar(value: Any) -> float:
    array = np.ravel(np.asarray(value, dtype=float))
    return float(array[-1])
