"""Exact SHAP engines, each built only if it passes its self-check on the version's
reference rows; otherwise :class:`Unavailable` says why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from service.explainers.shap.checks import (
    Check,
    CheckFailed,
    additivity,
    brute_force_pairs,
    probe_rows,
    worst,
)
from service.explainers.shap.ensemble import FLOAT64_ROUNDOFF, gamma
from service.explainers.shap.exact import MAX_FEATURES, ExactShap
from service.explainers.shap.linear import LinearShap
from service.explainers.shap.native import own_trees
from service.explainers.shap.shap_reference import Unavailable, against_shap
from service.explainers.shap.tree_exact import LINKS, TreeEnumeration
from service.explainers.shap.treeshap import NativeTreeShap
from service.registry.loaded import LoadedModel


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
        against = against_shap(model, trees, background, probe, found.values, tolerance)
        if against is not None:
            checks.append(against)
    except CheckFailed as exc:
        raise Unavailable(f"self-check failed: {exc}") from exc
    return engine, worst(checks)


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
