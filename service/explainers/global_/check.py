"""Checks of a global request against the model's manifest, before a job is queued."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import InvalidRequestError, Issue
from service.explainers.global_.data import label_text
from service.explainers.global_.options import CLASSIFIER_METRICS, GlobalOptions
from service.registry.manifest import FeatureType, Manifest, Task


def check_request(
    manifest: Manifest,
    methods: Sequence[str],
    options: GlobalOptions,
    rows: Sequence[Any] | None,
    labels: Sequence[Any] | None,
) -> None:
    """Raise one 422 naming every field that cannot work with this model."""
    issues: list[Issue] = []
    known = set(manifest.feature_names)
    for method in ("pdp", "ice", "ale"):
        if method not in methods:
            continue
        for i, name in enumerate(getattr(options, method).features or []):
            loc = ("body", "options", method, "features", i)
            if name not in known:
                issues.append(Issue(loc, f"unknown feature '{name}' for this model", "enum"))
            elif method == "ale" and manifest.feature(name).type is not FeatureType.numeric:
                issues.append(Issue(loc, f"ALE needs a numeric feature; '{name}' is not"))
    classifier = manifest.task is Task.binary_classification
    metric = options.permutation_importance.metric
    if "permutation_importance" in methods and metric is not None:
        if (metric in CLASSIFIER_METRICS) != classifier:
            kind = "classifiers" if metric in CLASSIFIER_METRICS else "regression"
            loc = ("body", "options", "permutation_importance", "metric")
            issues.append(Issue(loc, f"'{metric}' applies to {kind} only"))
    for method in ("shap_importance", "pdp", "ice", "ale"):
        space = getattr(options, method).output
        if method in methods and not classifier and space not in ("auto", "raw"):
            loc = ("body", "options", method, "output")
            issues.append(Issue(loc, f"'{space}' applies to classifiers; use 'raw' or 'auto'"))
    issues += _label_issues(manifest, methods, rows, labels, classifier)
    if issues:
        raise InvalidRequestError(issues)


def _label_issues(
    manifest: Manifest,
    methods: Sequence[str],
    rows: Sequence[Any] | None,
    labels: Sequence[Any] | None,
    classifier: bool,
) -> list[Issue]:
    if labels is None:
        if "permutation_importance" not in methods:
            return []
        if rows is not None:
            return [Issue(("body", "labels"), "permutation importance needs labels for the rows")]
        if manifest.evaluation_data is None or manifest.target is None:
            missing = "evaluation set" if manifest.evaluation_data is None else "target column"
            return [
                Issue(
                    ("body", "methods"),
                    f"permutation importance needs labelled rows: this version has no "
                    f"{missing}; send rows with labels",
                )
            ]
        return []
    if rows is None:
        return [Issue(("body", "labels"), "labels need rows: send them with 'rows'")]
    if len(labels) != len(rows):
        return [Issue(("body", "labels"), f"{len(labels)} labels for {len(rows)} rows")]
    issues = []
    texts = [label_text(v) for v in labels]
    if classifier and "permutation_importance" in methods and len(set(texts)) < 2:
        issues.append(Issue(("body", "labels"), "permutation importance needs both classes"))
    for i, (label, text) in enumerate(zip(labels, texts, strict=True)):
        if classifier and text not in (manifest.classes or []):
            msg = f"must be one of the classes {manifest.classes}"
            issues.append(Issue(("body", "labels", i), msg, "enum"))
        elif not classifier and isinstance(label, str):
            issues.append(Issue(("body", "labels", i), "must be a number", "type_error"))
    return issues[:50]
