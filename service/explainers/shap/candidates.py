"""Exact SHAP engines, each built only if it passes its self-check on the version's
reference rows; otherwise :class:`Unavailable` says why."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from service.explainers.shap.checks import (
    Check,
    CheckFailed,
    additivity,
    brute_force_pairs,
    worst,
)
from service.explainers.shap.ensemble import FLOAT32_ROUNDOFF, FLOAT64_ROUNDOFF, gamma
from service.explainers.shap.exact import MAX_FEATURES, ExactShap
from service.explainers.shap.linear import LinearShap
from service.explainers.shap.native import NativeTrees, native_trees
from service.explainers.shap.tree import TreeShap
from service.explainers.shap.tree_exact import LINKS, TreeEnumeration
from service.explainers.shap.treeshap import NativeTreeShap
from service.registry.loaded import LoadedModel

VERIFY_ROWS = 5
# shap's own TreeExplainer, when the native engine cannot be used: float32 arithmetic in
# its interventional code, relative to the output's magnitude
SHAP_RELATIVE_TOLERANCE = 1e-5
BRUTE_FORCE_EVALUATIONS = 2**20

log = logging.getLogger(__name__)


class Unavailable(ValueError):
    """This engine cannot explain the model in the requested space (the message: why)."""


def probe_rows(model: LoadedModel) -> pd.DataFrame:
    return model.reference.iloc[:VERIFY_ROWS]


def own_trees(model: LoadedModel) -> NativeTrees:
    """The version's trees, calibrated on its own reference rows (not a baseline subset)."""
    return native_trees(
        model.predictor, lambda: LoadedModel(model.version, model.predictor).reference
    )


def linear(model: LoadedModel, space: str, background: pd.DataFrame) -> tuple[Any, Check]:
    if space == "probability":
        raise Unavailable("the model is linear in log-odds, not in probability")
    try:
        engine = LinearShap(model.predictor, background)
    except ValueError as exc:
        raise Unavailable(str(exc)) from exc
    probe = probe_rows(model)
    found = engine.explain(probe)
    output = model.predictor.output(probe, space)
    try:
        return engine, additivity(found.values, found.base_value, output, engine.tolerance(probe))
    except CheckFailed as exc:
        raise Unavailable(f"self-check failed: {exc}") from exc


def native(model: LoadedModel, space: str, background: pd.DataFrame) -> tuple[Any, Check]:
    """The native engine: its parse reproduces the model's predictions, its values add up
    and equal brute-force Shapley values on reference pairs, and shap's where shap's own
    values add up."""
    predictor = model.predictor
    try:
        trees = own_trees(model)
    except ValueError as exc:
        raise Unavailable(str(exc)) from exc
    if trees.native_space != space:
        raise Unavailable(
            f"the trees sum to the model's {trees.native_space} output, not to {space}"
        )
    engine = NativeTreeShap(trees, predictor, background)
    probe = probe_rows(model)
    found = engine.explain(probe)
    tolerance = trees.row_tolerance(predictor, probe)
    try:
        checks = [
            Check("predictions of the parsed trees", trees.parse_error, trees.parse_tolerance),
            additivity(found.values, found.base_value, predictor.output(probe, space), tolerance),
            brute_force_pairs(
                lambda x, r: (NativeTreeShap(trees, predictor, r).explain(x).values, 0.0),
                lambda frame: predictor.output(frame, space),
                lambda frame: trees.row_tolerance(predictor, frame),
                probe,
                background,
            ),
        ]
        against = _against_shap(model, trees, background, probe, found.values, tolerance)
        if against is not None:
            checks.append(against)
    except CheckFailed as exc:
        raise Unavailable(f"self-check failed: {exc}") from exc
    return engine, worst(checks)


def _against_shap(
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


def tree_enumeration_available(model: LoadedModel, space: str) -> bool:
    """Whether the parsed trees can stand in for the model in an exact enumeration."""
    if model.predictor.tree_model() is None:
        return False
    try:
        trees = own_trees(model)
    except ValueError:
        return False
    return trees.native_space == space or (trees.native_space, space) in LINKS


def exact(model: LoadedModel, space: str, background: pd.DataFrame) -> tuple[Any, Check]:
    """Every coalition enumerated: over the parsed trees where they reproduce the model
    (checked like the native engine), else by calling the model on every hybrid row."""
    n_features = len(model.manifest.features)
    if n_features > MAX_FEATURES:
        raise Unavailable(
            f"exact enumeration needs at most {MAX_FEATURES} features; this model has {n_features}"
        )
    predictor = model.predictor
    probe = probe_rows(model)
    if tree_enumeration_available(model, space):
        trees = own_trees(model)
        engine: Any = TreeEnumeration(trees, predictor, background, space)
        found = engine.explain(probe)
        try:
            return engine, worst(
                [
                    Check(
                        "predictions of the parsed trees", trees.parse_error, trees.parse_tolerance
                    ),  # fmt: skip
                    additivity(
                        found.values,
                        found.base_value,
                        predictor.output(probe, space),
                        engine.tolerance(probe),
                    ),  # fmt: skip
                    brute_force_pairs(
                        lambda x, r: (
                            TreeEnumeration(trees, predictor, r, space).explain(x).values,
                            0.0,
                        ),  # fmt: skip
                        lambda frame: predictor.output(frame, space),
                        engine.tolerance,
                        probe,
                        background,
                    ),
                ]
            )
        except CheckFailed as exc:
            raise Unavailable(f"self-check of the enumeration over the trees: {exc}") from exc
    engine = ExactShap(predictor, background, space)
    probe = probe.iloc[:1]
    found = engine.explain(probe)
    output = predictor.output(probe, space)
    scale = np.abs(output) + np.abs(found.values).sum(axis=1) + abs(found.base_value)
    tolerance = gamma(2 ** (n_features + 1), FLOAT64_ROUNDOFF) * scale
    return engine, additivity(found.values, found.base_value, output, tolerance)
