"""Effect curves of one feature: partial dependence with ICE curves, and ALE."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from service.plots.render import NEGATIVE, NEUTRAL, POSITIVE, figure, readable, show_value
from service.plots.sources import require_finite, space_label


def dependence(section: dict[str, Any], entry: dict[str, Any], method: str) -> Figure:
    """The average curve (PDP) over thin individual curves (ICE) when the job has them."""
    categorical = entry["kind"] == "categorical"
    name = entry["feature"]
    points = [("average", v) for v in entry["average"]]
    points += [(f"ICE curve {i}", v) for i, c in enumerate(entry.get("curves") or []) for v in c]
    if not categorical:
        points += [("grid", v) for v in entry["grid"]]
    require_finite(f"the partial dependence of {name}", points)
    fig = figure(7.5, 4.2)
    ax = fig.add_subplot()
    x = list(range(len(entry["grid"]))) if categorical else entry["grid"]
    for curve in entry.get("curves") or []:
        ax.plot(x, curve, color=NEUTRAL, alpha=0.18, linewidth=0.7)
    style = {"marker": "o"} if categorical or len(x) < 8 else {}
    ax.plot(x, entry["average"], color=POSITIVE, linewidth=2.2, label="average (PDP)", **style)
    if categorical:
        labels = [show_value(v) for v in entry["grid"]]
        ax.set_xticks(x, labels, rotation=25 if max(map(len, labels)) > 10 else 0, ha="right")
    if entry.get("curves"):
        ax.plot([], [], color=NEUTRAL, alpha=0.5, label=f"{len(entry['curves'])} rows (ICE)")
    ax.legend(loc="best", frameon=False)
    ax.set_xlabel(readable(entry["feature"]))
    ax.set_ylabel(space_label(section["output_space"]))
    data = section["data"]
    what = "Partial dependence and ICE" if method == "ice" else "Partial dependence"
    ax.set_title(f"{what}: {readable(entry['feature'])} ({data['rows']} rows)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def accumulated(section: dict[str, Any], entry: dict[str, Any]) -> Figure:
    """Centred ALE at the bin edges, with the edges marked along the axis."""
    require_finite(
        f"the accumulated local effects of {entry['feature']}",
        [("edges", v) for v in entry["edges"]] + [("values", v) for v in entry["values"]],
    )
    fig = figure(7.5, 4.2)
    ax = fig.add_subplot()
    ax.plot(entry["edges"], entry["values"], color=NEGATIVE, linewidth=2, marker="o", markersize=3)
    ax.axhline(0, color="#999999", linewidth=0.8)
    for edge in entry["edges"]:
        ax.axvline(edge, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_xlabel(f"{readable(entry['feature'])} ({len(entry['edges']) - 1} quantile bins)")
    ax.set_ylabel(f"centred effect on the {space_label(section['output_space'])}")
    data = section["data"]
    ax.set_title(f"Accumulated local effects: {readable(entry['feature'])} ({data['rows']} rows)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
