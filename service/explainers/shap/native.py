"""A predictor's trees, parsed once per model version, calibrated and checked against the
model's own predictions: what the native TreeSHAP engine computes from."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.explainers.shap import kernels
from service.explainers.shap.ensemble import (
    FLOAT64_ROUNDOFF,
    TreeEnsemble,
    UnsupportedModel,
    gamma,
)
from service.explainers.shap.layout import Layout, build_layout
from service.registry.loaded import LoadedModel
from service.registry.predictors import Predictor

HYBRID_ROWS = 64
HYBRID_SEED = 0


@dataclass
class NativeTrees:
    """The ensemble of one predictor with its offset calibrated on the version's reference
    rows (model output minus the sum of leaves, which must be the same on every row)."""

    ensemble: TreeEnsemble
    layout: Layout
    calibration_magnitude: float  # largest sum of |leaf values| over the calibration rows
    parse_error: float  # largest |model - trees| over reference and hybrid rows
    parse_tolerance: float

    @property
    def native_space(self) -> str:
        return self.ensemble.native_space

    def design(self, predictor: Predictor, frame: pd.DataFrame) -> np.ndarray:
        matrix = predictor.design(frame)
        if matrix is None:
            raise UnsupportedModel("the model offers no design matrix")
        return self.ensemble.design(matrix)

    def raw(self, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offset + sum of leaf values, sum of |leaf values|) per row."""
        layout = self.layout
        total, magnitude = kernels.predict(
            design, layout.roots, layout.left, layout.right, layout.value,
            *layout.node_arrays(),
        )  # fmt: skip
        return total + self.ensemble.offset, magnitude

    def tolerance(self, magnitude: np.ndarray, roundoff: float | None = None) -> np.ndarray:
        """Bound on |model output - trees| per row in the native space: the library's own
        leaf sum (its unit roundoff, one rounding per tree) and ours in float64 (one per
        leaf term), both over the row's and the calibration rows' leaf magnitudes.
        ``roundoff`` replaces the library's (shap's interventional code is float32)."""
        scale = abs(self.ensemble.offset) + magnitude + self.calibration_magnitude
        own = self.ensemble.roundoff if roundoff is None else max(roundoff, self.ensemble.roundoff)
        factor = gamma(self.ensemble.n_trees + 1, own) + gamma(
            self.layout.n_leaves + 2, FLOAT64_ROUNDOFF
        )
        return factor * scale

    def row_tolerance(self, predictor: Predictor, frame: pd.DataFrame) -> np.ndarray:
        return self.tolerance(self.raw(self.design(predictor, frame))[1])


_cache: weakref.WeakKeyDictionary[Predictor, NativeTrees | UnsupportedModel] = (
    weakref.WeakKeyDictionary()
)


def native_trees(predictor: Predictor, reference: Callable[[], pd.DataFrame]) -> NativeTrees:
    """Parse, calibrate and check once per predictor (``reference``: the version's own
    reference rows, so that every worker calibrates identically)."""
    cached = _cache.get(predictor)
    if cached is None:
        try:
            cached = _build(predictor, reference())
        except UnsupportedModel as exc:
            cached = exc
        except Exception as exc:  # noqa: BLE001 - a model the parser misreads is unsupported
            cached = UnsupportedModel(f"{type(exc).__name__}: {exc}")
        _cache[predictor] = cached
    if isinstance(cached, UnsupportedModel):
        raise cached
    return cached


def own_trees(model: LoadedModel) -> NativeTrees:
    """The version's trees, calibrated on its own reference rows (not a baseline subset)."""
    return native_trees(
        model.predictor, lambda: LoadedModel(model.version, model.predictor).reference
    )


def parse(predictor: Predictor) -> TreeEnsemble:
    from service.registry.predictors import LightGBMPredictor, XGBoostPredictor

    model = predictor.tree_model()
    if model is None:
        raise UnsupportedModel("the model offers no tree view")
    if isinstance(predictor, XGBoostPredictor):
        from service.explainers.shap.trees_boosters import xgboost_ensemble

        return xgboost_ensemble(model, predictor.output_sign)
    if isinstance(predictor, LightGBMPredictor):
        from service.explainers.shap.trees_boosters import lightgbm_ensemble

        return lightgbm_ensemble(model, predictor.output_sign)
    from service.explainers.shap.trees_sklearn import sklearn_ensemble

    return sklearn_ensemble(model, predictor.output_sign if predictor.is_classifier else 1.0)


def _build(predictor: Predictor, reference: pd.DataFrame) -> NativeTrees:
    ensemble = parse(predictor)
    if predictor.is_classifier != (ensemble.native_space != "raw"):
        raise UnsupportedModel("the model's task and its trees' output disagree")
    players = predictor.column_features()
    if players is None:
        raise UnsupportedModel("design columns cannot be mapped back to raw features")
    n_features = len(predictor.manifest.features)
    if ensemble.columns is not None:
        players = [players[c] for c in ensemble.columns]
    layout = build_layout(ensemble, players)
    space = ensemble.native_space
    trees = NativeTrees(ensemble, layout, 0.0, 0.0, 0.0)
    sums, magnitude = trees.raw(trees.design(predictor, reference))
    residual = predictor.output(reference, space) - sums
    trees.ensemble = ensemble.with_offset(float(np.mean(residual)))
    trees.calibration_magnitude = float(np.max(magnitude))
    # the offset must be one constant: check it on the reference and on hybrid rows
    rows = pd.concat([reference, hybrids(reference, HYBRID_ROWS)], ignore_index=True)
    sums, magnitude = trees.raw(trees.design(predictor, rows))
    error = np.abs(predictor.output(rows, space) - sums)
    tolerance = trees.tolerance(magnitude)
    worst = int(np.argmax(error / tolerance))
    trees.parse_error, trees.parse_tolerance = float(error[worst]), float(tolerance[worst])
    if not np.all(error <= tolerance):
        raise UnsupportedModel(
            f"its trees do not reproduce the model's {space} output "
            f"(error {trees.parse_error:.3g} > tolerance {trees.parse_tolerance:.3g})"
        )
    if layout.n_players > n_features:
        raise UnsupportedModel("more players than raw features")
    return trees


def hybrids(rows: pd.DataFrame, count: int, seed: int = HYBRID_SEED) -> pd.DataFrame:
    """Rows mixing the raw features of random pairs of ``rows`` (seeded)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(rows), count)
    second = rng.integers(0, len(rows), count)
    take = rng.random((count, rows.shape[1])) < 0.5
    columns = {}
    for j, name in enumerate(rows.columns):
        values = rows[name].to_numpy()
        columns[name] = np.where(take[:, j], values[second], values[first])
    return pd.DataFrame(columns).astype(rows.dtypes.to_dict())
