"""shap's TreeExplainer as a reference for the native engine (where brute force does not
prove it wrong) and as its fallback (where the native engine cannot read the model)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from service.explainers.shap.checks import Check, CheckFailed, additivity, probe_rows
from service.explainers.shap.ensemble import FLOAT32_ROUNDOFF
from service.explainers.shap.exact import MAX_FEATURES, ExactShap
from service.explainers.shap.native import NativeTrees, own_trees
from service.explainers.shap.tree import TreeShap
from service.registry.loaded import LoadedModel

# shap's own TreeExplainer, when the native engine cannot be used: float32 arithmetic in
# its interventional code, relative to the output's magnitude
SHAP_RELATIVE_TOLERANCE = 1e-5
BRUTE_FORCE_EVALUATIONS = 2**20

log = logging.getLogger(__name__)


class Unavailable(ValueError):
    """This engine cannot explain the model in the requested space (the message: why)."""


def against_shap(
    model: LoadedModel,
    trees: NativeTrees,
    background: pd.DataFrame,
    probe: pd.DataFrame,
    values: np.ndarray,
    tolerance: np.ndarray,
) -> Check | None:
    """Agreement with shap.TreeExplainer, when shap explains the model at all and its own
    values add up (shap's interventional code works in float32, hence its tolerance)."""
    predictor = model.predictor
    columns = predictor.column_features()
    if columns is None or sorted(columns) != list(range(len(model.manifest.features))):
        return None  # several columns per feature: shap's column values answer another game
    try:
        reference = TreeShap(predictor, background)
        theirs = reference.explain(probe)
    except Exception:  # noqa: BLE001 - shap refuses some models (categorical splits)
        return None
    float32 = trees.tolerance(trees.raw(trees.design(predictor, probe))[1], FLOAT32_ROUNDOFF)
    output = predictor.output(probe, trees.native_space)
    own_error = np.abs(output - theirs.base_value - theirs.values.sum(axis=1))
    if np.any(own_error > float32):
        return None  # shap is wrong here (e.g. LightGBM categorical splits): no reference
    error = np.abs(values - theirs.values).max(axis=1)
    allowed = float32 + tolerance
    if np.all(error <= allowed):
        return Check.of("agreement with shap.TreeExplainer", error, allowed)
    # disagreement: brute force decides which one is wrong
    row = probe.iloc[[int(np.argmax(error / allowed))]]
    truth = _brute_force(model, trees.native_space, row, background)
    if truth is None:
        raise CheckFailed(
            f"agreement with shap.TreeExplainer: error {error.max():.3g} exceeds the "
            f"tolerance {allowed[int(np.argmax(error))]:.3g}"
        )
    ours = np.abs(values[int(np.argmax(error / allowed))] - truth).max()
    theirs_error = np.abs(theirs.values[int(np.argmax(error / allowed))] - truth).max()
    bound = float(allowed.max())
    if ours <= bound < theirs_error:
        log.warning(
            "%s: shap.TreeExplainer differs from brute-force Shapley by %.3g (the native "
            "engine by %.3g); shap is not used as a reference",
            model.manifest.name, theirs_error, ours,
        )  # fmt: skip
        return Check("brute-force Shapley (shap.TreeExplainer is wrong here)", ours, bound)
    raise CheckFailed(
        f"agreement with shap.TreeExplainer and brute force: error {ours:.3g} "
        f"(shap {theirs_error:.3g}) against the tolerance {bound:.3g}"
    )


def _brute_force(
    model: LoadedModel, space: str, row: pd.DataFrame, background: pd.DataFrame
) -> np.ndarray | None:
    """Exact Shapley values of one row by enumeration, when that is affordable."""
    n_features = len(model.manifest.features)
    if n_features > MAX_FEATURES or 2**n_features * len(background) > BRUTE_FORCE_EVALUATIONS:
        return None
    return ExactShap(model.predictor, background, space).explain(row).values[0]


def shap_tree(model: LoadedModel, space: str, background: pd.DataFrame) -> tuple[Any, Check]:
    """shap.TreeExplainer on the raw (margin) output, for models the native engine cannot
    read; only where each raw feature is one design column (else shap's column values
    summed are not the raw features' Shapley values)."""
    predictor = model.predictor
    columns = predictor.column_features()
    if columns is None or sorted(columns) != list(range(len(model.manifest.features))):
        raise Unavailable("raw features span several design columns")
    try:
        native_space = own_trees(model).native_space
    except ValueError:
        native_space = None
    if native_space is not None and native_space != space:
        raise Unavailable(f"the trees sum to the model's {native_space} output, not to {space}")
    if space == "probability" and predictor.is_classifier and native_space is None:
        raise Unavailable("shap's TreeExplainer is exact only for the trees' raw output")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = TreeShap(predictor, background)
            probe = probe_rows(model)
            found = engine.explain(probe)
    except Exception as exc:  # noqa: BLE001 - shap refuses the model
        raise Unavailable(str(exc) or type(exc).__name__) from exc
    output = predictor.output(probe, space)
    scale = np.abs(output) + np.abs(found.values).sum(axis=1) + abs(found.base_value) + 1.0
    try:
        return engine, additivity(
            found.values, found.base_value, output, SHAP_RELATIVE_TOLERANCE * scale
        )
    except CheckFailed as exc:
        raise Unavailable(f"self-check failed: {exc}") from exc
