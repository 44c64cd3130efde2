"""Bar chart of global importance: permutation (mean ± std) or mean |SHAP| per feature."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from service.plots.render import NEGATIVE, figure, readable
from service.plots.sources import require_finite, space_label


def importance(method: str, section: dict[str, Any], top: int = 15) -> Figure:
    """The ``top`` most important features, largest at the top."""
    features = section["features"][:top][::-1]
    names = [readable(f["feature"]) for f in features]
    data = section["data"]
    if method == "permutation_importance":
        require_finite(
            "permutation importance",
            [(f"{section['metric']} baseline score", section.get("baseline_score"))]
            + [(f["feature"], f.get(k)) for f in features for k in ("mean", "std")],
        )
    else:
        require_finite("SHAP importance", [(f["feature"], f.get("mean_abs")) for f in features])
    fig = figure(8.0, 0.32 * len(features) + 1.6)
    ax = fig.add_subplot()
    if method == "permutation_importance":
        means = [f["mean"] for f in features]
        errors = [f["std"] for f in features]
        ax.barh(names, means, xerr=errors, color=NEGATIVE, height=0.6, capsize=2)
        ax.set_xlabel(
            f"drop in {section['metric']} when shuffled (mean ± std of "
            f"{section['n_repeats']} shuffles; baseline {section['baseline_score']:.3f})"
        )
        ax.set_title(f"Permutation importance\n{data['rows']} rows: {data['source']}")
    else:
        ax.barh(names, [f["mean_abs"] for f in features], color=NEGATIVE, height=0.6)
        ax.set_xlabel(f"mean |SHAP| ({space_label(section['output_space'])})")
        ax.set_title(f"SHAP importance (mean |SHAP|)\n{data['rows']} rows: {data['source']}")
    ax.axvline(0, color="#999999", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
