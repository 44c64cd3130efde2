"""Waterfall of one local SHAP explanation: from the base value to the model's output."""

from __future__ import annotations

import textwrap
from typing import Any

from matplotlib.figure import Figure

from service.plots.render import NEGATIVE, NEUTRAL, POSITIVE, figure, readable, show_value
from service.plots.sources import require_finite, space_label

TITLE_WIDTH = 90  # characters of a title line that fit the figure's width


def waterfall(shap: dict[str, Any], max_display: int = 10) -> Figure:
    """Bars for the ``max_display - 1`` largest contributions and the rest summed, titled
    with the decision and the class the probability is of, and the rows it is against."""
    require_finite(
        "the waterfall",
        [("base_value", shap.get("base_value"))]
        + [(a["feature"], a.get("contribution")) for a in shap["attributions"]],
    )
    attributions = sorted(shap["attributions"], key=lambda a: -abs(a["contribution"]))
    shown = attributions[: max_display - 1] if len(attributions) > max_display else attributions
    rest = attributions[len(shown) :]
    labels = [f"{readable(a['feature'])} = {show_value(a['value'])}" for a in shown]
    values = [float(a["contribution"]) for a in shown]
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(sum(float(a["contribution"]) for a in rest))
    base = float(shap["base_value"])
    fig = figure(8.5, 0.42 * len(values) + 1.9)
    ax = fig.add_subplot()
    # bottom-up: the summed rest first, the largest contribution last, ending at f(x)
    rows = list(zip(labels, values, strict=True))[::-1]
    position = base
    for row, (_, value) in enumerate(rows):
        ax.barh(row, value, left=position, color=POSITIVE if value >= 0 else NEGATIVE, height=0.6)
        ax.text(
            position + value,
            row,
            f" {value:+.3f} ",
            va="center",
            ha="left" if value >= 0 else "right",
            fontsize=8,
            color=NEUTRAL,
        )
        position += value
    output = position
    ax.set_yticks(range(len(labels)), labels[::-1])
    ax.axvline(base, color=NEUTRAL, linestyle=":", linewidth=1)
    ax.axvline(output, color=NEUTRAL, linestyle="--", linewidth=1)
    space = space_label(shap.get("output_space", ""), shap.get("favourable_class"))
    ax.set_xlabel(f"{space}: base {base:.3f} → f(x) {output:.3f}")
    against = textwrap.fill(shap.get("against", ""), TITLE_WIDTH)
    # over the whole figure: long feature labels push the axes right
    fig.suptitle(f"{shap.get('title') or 'Why this decision'}\n{against}".strip())
    ax.margins(x=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
