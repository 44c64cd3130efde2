"""Global explanations: what a model relies on over many rows, not one decision.

Permutation importance (on labelled held-out rows), mean |SHAP| with the beeswarm's points,
partial dependence and ICE curves, and accumulated local effects. Every result says which
rows it used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from service.explainers.global_.ale import ale
from service.explainers.global_.data import GlobalData, labelled, supplied, unlabelled
from service.explainers.global_.options import (
    GLOBAL_METHODS,
    AleOptions,
    CurveOptions,
    GlobalOptions,
    curve_space,
)
from service.explainers.global_.pdp import dependence
from service.explainers.global_.permutation import permutation_importance
from service.explainers.global_.shap_importance import shap_importance
from service.explainers.shap import ShapExplainer
from service.registry.loaded import LoadedModel
from service.registry.manifest import FeatureType

__all__ = ["GLOBAL_METHODS", "GlobalOptions", "run_global"]

ShapFactory = Callable[[dict[str, Any]], ShapExplainer]


def run_global(
    model: LoadedModel,
    methods: Sequence[str],
    raw_options: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[Any] | None,
    seed: int,
    shap_explainer: ShapFactory,
) -> dict[str, Any]:
    """One document with a section per requested method (``rows`` empty: model's data)."""
    options = GlobalOptions.model_validate(dict(raw_options))
    request = supplied(model, rows, labels) if rows else None
    results: dict[str, Any] = {}
    for method in methods:
        if method == "permutation_importance":
            opts = options.permutation_importance
            data = labelled(model, request).sample(opts.max_rows, seed)
            results[method] = permutation_importance(model, data, opts, seed)
        elif method == "shap_importance":
            opts_shap = options.shap_importance
            explainer = shap_explainer({"output": opts_shap.output})
            results[method] = shap_importance(
                explainer, unlabelled(model, request), opts_shap.max_rows, seed
            )
        elif method in ("pdp", "ice"):
            results[method] = _curves(model, unlabelled(model, request), method, options, seed)
        elif method == "ale":
            results[method] = _ale(model, unlabelled(model, request), options.ale, seed)
    return results


def _curves(
    model: LoadedModel, data: GlobalData, method: str, options: GlobalOptions, seed: int
) -> dict[str, Any]:
    opts: CurveOptions = getattr(options, method)
    data = data.sample(opts.max_rows, seed)
    space = curve_space(opts.output, model.predictor.is_classifier)
    manifest = model.manifest
    features = [manifest.feature(n) for n in opts.features or manifest.feature_names]
    return {
        "output_space": space,
        "data": data.info(),
        "features": dependence(
            _output(model, space), data, features, opts.grid_resolution, method == "ice"
        ),
    }


def _ale(model: LoadedModel, data: GlobalData, opts: AleOptions, seed: int) -> dict[str, Any]:
    data = data.sample(opts.max_rows, seed)
    space = curve_space(opts.output, model.predictor.is_classifier)
    manifest = model.manifest
    names = opts.features or [f.name for f in manifest.features if f.type is FeatureType.numeric]
    output = _output(model, space)
    return {
        "output_space": space,
        "data": data.info(),
        "features": [ale(output, data.frame, name, opts.bins) for name in names],
    }


def _output(model: LoadedModel, space: str) -> Callable[[pd.DataFrame], Any]:
    return lambda frame: model.predictor.output(frame, space)
