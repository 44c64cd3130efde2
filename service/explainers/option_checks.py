"""Checks of local explanation options against a model's manifest.

The gateway runs them before a job is queued, so a request the model cannot serve is a
422 at once, never an accepted job that fails later; the explainers run the same checks
when they are built. (The global methods' checks are in ``global_/check.py``.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service.errors import Issue
from service.explainers.anchor_bins import cut_point_issues
from service.explainers.shap.exact import MAX_FEATURES as EXACT_MAX_FEATURES
from service.registry.manifest import Feature, FeatureType, Manifest, Task

if TYPE_CHECKING:
    from service.explainers.counterfactual import CounterfactualOptions

COUNTERFACTUAL = ("body", "options", "counterfactual")
CLASSIFIERS_ONLY = ("anchor", "counterfactual")
STRUCTURED = ("tree", "linear")  # SHAP algorithms that need the model's own structure


def request_issues(
    manifest: Manifest,
    methods: list[str],
    options: Mapping[str, Any],
    shap_algorithm: str | None = None,
) -> list[Issue]:
    """Every problem of ``methods`` with their parsed ``options`` (method -> options) on
    this model; ``shap_algorithm`` is the version's SHAP algorithm when known."""
    issues: list[Issue] = []
    classifier = manifest.task is Task.binary_classification
    for method in methods:
        if method in CLASSIFIERS_ONLY and not classifier:
            issues.append(
                Issue(("body", "methods"), f"'{method}' explains classifiers; this is a regression")
            )
            continue
        opts = options.get(method)
        space = getattr(opts, "output", "auto")
        if space not in ("auto", "raw") and not classifier:
            issues.append(
                Issue(
                    ("body", "options", method, "output"),
                    f"'{space}' applies to classifiers; a regression model explains its raw output",
                )
            )
        if method == "shap" and opts is not None:
            issues += shap_issues(manifest, opts.algorithm, shap_algorithm)
        if method == "anchor" and opts is not None:
            issues += cut_point_issues(manifest, opts.cut_points)
        if method == "counterfactual":
            if importlib.util.find_spec("dice_ml") is None:
                issues.append(Issue(("body", "methods"), "counterfactuals need dice-ml installed"))
            elif opts is not None:
                issues += counterfactual_issues(manifest, opts)
    return issues


def shap_issues(manifest: Manifest, requested: str, available: str | None) -> list[Issue]:
    loc = ("body", "options", "shap", "algorithm")
    count = len(manifest.features)
    if requested == "exact" and count > EXACT_MAX_FEATURES:
        return [
            Issue(
                loc,
                f"exact enumeration needs at most {EXACT_MAX_FEATURES} features; "
                f"this model has {count}",
            )
        ]
    if requested in STRUCTURED and available in STRUCTURED and requested != available:
        return [
            Issue(
                loc,
                f"'{requested}' SHAP is not available for this model (its structure gives "
                f"'{available}'); use 'auto', '{available}', 'exact' or 'sampling'",
            )
        ]
    return []


def why_fixed(feature: Feature) -> str | None:
    """Why recourse may never change a feature, or None."""
    if feature.protected:
        return "protected"
    if not feature.mutable:
        return "immutable"
    return None


def counterfactual_issues(manifest: Manifest, options: CounterfactualOptions) -> list[Issue]:
    """``desired_class``, ``features_to_vary`` and ``permitted_range`` against the manifest."""
    issues: list[Issue] = []
    classes = [str(c) for c in manifest.classes or []]
    if options.desired_class is not None and options.desired_class not in classes:
        issues.append(
            Issue(
                (*COUNTERFACTUAL, "desired_class"),
                f"'{options.desired_class}' is not a class of this model; valid: {classes}",
            )
        )
    names = manifest.feature_names
    if options.features_to_vary is not None:
        loc = (*COUNTERFACTUAL, "features_to_vary")
        unknown = sorted({n for n in options.features_to_vary if n not in names})
        fixed = {n: why_fixed(manifest.feature(n)) for n in options.features_to_vary if n in names}
        refused = sorted(n for n, why in fixed.items() if why)
        if unknown:
            issues.append(Issue(loc, f"unknown features {unknown}; valid: {names}"))
        if refused:
            detail = ", ".join(f"{n} ({fixed[n]})" for n in refused)
            issues.append(Issue(loc, f"these features may never change: {detail}"))
    for name, (low, high) in (options.permitted_range or {}).items():
        loc = (*COUNTERFACTUAL, "permitted_range", name)
        if name not in names:
            issues.append(Issue(loc, f"unknown feature '{name}'"))
            continue
        feature = manifest.feature(name)
        if feature.type is not FeatureType.numeric:
            issues.append(Issue(loc, f"'{name}' is {feature.type}; ranges are numeric"))
        elif why_fixed(feature):
            issues.append(Issue(loc, f"'{name}' may never change ({why_fixed(feature)})"))
        elif feature.range is not None and (low < feature.range[0] or high > feature.range[1]):
            issues.append(Issue(loc, f"must lie within the manifest's range {list(feature.range)}"))
    return issues
