"""Association between raw features, to warn when importance may be split between two.

Numeric and ordinal pairs: |Spearman rho|; categorical pairs: bias-corrected Cramér's V;
categorical with numeric: the correlation ratio eta. All lie in [0, 1].
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, spearmanr

from service.registry.manifest import Feature, FeatureType, Manifest


def strong_associations(
    frame: pd.DataFrame, manifest: Manifest, threshold: float
) -> list[dict[str, Any]]:
    """Every pair of features whose association reaches ``threshold``, strongest first."""
    found = []
    for a, b in itertools.combinations(manifest.features, 2):
        measure, value = association(frame[a.name], frame[b.name], a, b)
        if value >= threshold:
            found.append(
                {
                    "features": [a.name, b.name],
                    "measure": measure,
                    "coefficient": value,
                    "message": f"{a.name} and {b.name} are strongly associated ({measure} "
                    f"{value:.2f}): permuting one leaves its information in the other, so "
                    "their importance may be split between them",
                }
            )
    return sorted(found, key=lambda w: -w["coefficient"])


def association(x: pd.Series, y: pd.Series, fx: Feature, fy: Feature) -> tuple[str, float]:
    """(measure name, strength in [0, 1]) of two raw feature columns."""
    x_nominal, y_nominal = fx.type is FeatureType.categorical, fy.type is FeatureType.categorical
    if x_nominal and y_nominal:
        return "cramers_v", cramers_v(x, y)
    if x_nominal or y_nominal:
        nominal, other, feature = (x, y, fy) if x_nominal else (y, x, fx)
        return "correlation_ratio", correlation_ratio(nominal, _numeric(other, feature))
    a, b = _numeric(x, fx), _numeric(y, fy)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return "spearman", 0.0
    return "spearman", float(abs(spearmanr(a, b).statistic))


def cramers_v(x: pd.Series, y: pd.Series) -> float:
    """Bergsma's bias-corrected Cramér's V (small samples with many categories inflate V)."""
    table = pd.crosstab(x, y).to_numpy()
    n = table.sum()
    r, k = table.shape
    if r < 2 or k < 2 or n < 2:
        return 0.0
    chi2 = chi2_contingency(table, correction=False)[0]
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_corr, k_corr = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(k_corr - 1, r_corr - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else 0.0


def correlation_ratio(groups: pd.Series, values: np.ndarray) -> float:
    """eta: the share of the numeric's spread explained by the categories, square-rooted."""
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    frame = pd.DataFrame({"g": groups.to_numpy(), "v": values})
    stats = frame.groupby("g")["v"].agg(["mean", "count"])
    between = float((stats["count"] * (stats["mean"] - values.mean()) ** 2).sum())
    return float(np.sqrt(between / total))


def _numeric(values: pd.Series, feature: Feature) -> np.ndarray:
    if feature.type is FeatureType.ordinal:
        order = {c: i for i, c in enumerate(feature.categories or [])}
        return np.array([order[v] for v in values], dtype=float)
    return values.to_numpy(dtype=float)
