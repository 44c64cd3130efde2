"""How Anchors cut numeric features into intervals: cut points per feature from the
request, else from the manifest, else ``quantile_bins`` quantiles of the reference data
(4: quartiles, lime's and anchor-exp's discretiser)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidRequestError, Issue
from service.registry.catalogue import cut_points_problem
from service.registry.manifest import FeatureType, Manifest

DEFAULT_QUANTILE_BINS = 4
OPTION_LOC = ("body", "options", "anchor", "cut_points")


def cut_point_issues(
    manifest: Manifest, cut_points: Mapping[str, Sequence[float]] | None
) -> list[Issue]:
    """Problems of per-request cut points against the model's features, located."""
    issues = []
    names = set(manifest.feature_names)
    for name, points in (cut_points or {}).items():
        loc = (*OPTION_LOC, name)
        if name not in names:
            issues.append(Issue(loc, f"unknown feature '{name}' for this model", "enum"))
            continue
        feature = manifest.feature(name)
        if feature.type is not FeatureType.numeric:
            issues.append(Issue(loc, f"cut points apply to numeric features; '{name}' is not"))
            continue
        problem = cut_points_problem(points, feature.range)
        if problem:
            issues.append(Issue(loc, problem))
    return issues


def check_cut_points(manifest: Manifest, cut_points: Mapping[str, Sequence[float]] | None) -> None:
    issues = cut_point_issues(manifest, cut_points)
    if issues:
        raise InvalidRequestError(issues)


def numeric_edges(
    manifest: Manifest,
    reference: np.ndarray,
    quantile_bins: int,
    cut_points: Mapping[str, Sequence[float]] | None,
) -> tuple[list[np.ndarray | None], dict[str, Any]]:
    """Per feature (column of ``reference``, numeric values): the sorted interval edges
    (None for categorical/ordinal features), and the evidence saying where they came from."""
    levels = 100.0 * np.arange(1, quantile_bins) / quantile_bins
    edges: list[np.ndarray | None] = []
    report = []
    for j, feature in enumerate(manifest.features):
        if feature.type is not FeatureType.numeric:
            edges.append(None)
            continue
        requested = (cut_points or {}).get(feature.name)
        if requested is not None:
            found, source = np.asarray(requested, dtype=float), "request"
        elif feature.cut_points is not None:
            found, source = np.asarray(feature.cut_points, dtype=float), "manifest"
        else:
            found, source = np.unique(np.percentile(reference[:, j], levels)), "quantiles"
        edges.append(found)
        report.append({"feature": feature.name, "source": source, "edges": found.tolist()})
    return edges, {"quantile_bins": quantile_bins, "features": report}
