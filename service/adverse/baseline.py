"""The policy baseline: the population an applicant's reasons are measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from service.errors import invalid
from service.registry.loaded import LoadedModel
from service.registry.manifest import FeatureType, PolicyBaseline


@dataclass(frozen=True)
class Baseline:
    """Baseline rows and, per numeric/ordinal feature, their mean (ordinals: mean rank)."""

    kind: PolicyBaseline
    rows: pd.DataFrame
    description: str
    means: dict[str, float]

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "rows": len(self.rows), "description": self.description}

    def position(self, model: LoadedModel, feature: str, value: Any) -> float:
        """How far ``value`` lies above (+) or below (-) the baseline's mean; 0 when the
        feature is categorical (no order)."""
        spec = model.manifest.feature(feature)
        if spec.type is FeatureType.numeric:
            return float(value) - self.means[feature]
        if spec.type is FeatureType.ordinal:
            assert spec.categories is not None
            return spec.categories.index(str(value)) - self.means[feature]
        return 0.0


def policy_baseline(model: LoadedModel, kind: PolicyBaseline) -> Baseline:
    """Reference rows this version approves (``approved``) or all of them (``reference``)."""
    reference = model.reference
    source = model.manifest.reference_data.description or "reference data"
    if kind is PolicyBaseline.approved:
        approved = model.predictor.probability(reference) >= model.manifest.decision_threshold
        rows = reference[approved].reset_index(drop=True)
        if rows.empty:
            raise invalid(
                ("body", "options", "baseline"),
                "this version approves none of its reference rows; use baseline 'reference'",
            )
        description = f"reference applicants this version approves ({len(rows)} of {source})"
    else:
        rows, description = reference, f"all reference applicants ({source})"
    means: dict[str, float] = {}
    for feature in model.manifest.features:
        if feature.type is FeatureType.numeric:
            means[feature.name] = float(rows[feature.name].astype(float).mean())
        elif feature.type is FeatureType.ordinal:
            assert feature.categories is not None
            ranks = rows[feature.name].map({c: i for i, c in enumerate(feature.categories)})
            means[feature.name] = float(np.mean(ranks))
    return Baseline(kind=kind, rows=rows, description=description, means=means)
