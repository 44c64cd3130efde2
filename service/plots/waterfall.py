"""Waterfall of one local SHAP explanation: from the base value to the model's output."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from service.plots.render import NEGATIVE, NEUTRAL, POSITIVE, figure, readable, show_value
from service.plots.sources import space_label


def waterfall(shap: dict[str, Any], max_display: int = 10) -> Figure:
    """Bars for the ``max_display - 1`` largest contributions and the rest summed."""
    attributions = sorted(shap["attributions"], key=lambda a: -abs(a["contribution"]))
    shown = attributions[: max_display - 1] if len(attributions) > max_display else attributions
    rest = attributions[len(shown) :]
    labels = [f"{readable(a['feature'])} = {show_value(a['value'])}" for a in shown]
    values = [float(a["contribution"]) for a in shown]
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(sum(float(a["contribution"]) for a in rest))
    base = float(shap["base_value"])
    fig = figure(8.5, 0.42 * len(values) + 1.7)
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
    space = shap.get("output_space", "")
    ax.set_xlabel(f"{space_label(space)}: base {base:.3f} → f(x) {output:.3f}")
    prediction = shap.get("prediction") or {}
    decision = prediction.get("label")
    title = "Why this decision" + (f": {decision}" if decision else "")
    if prediction.get("probability") is not None:
        title += f" (probability {prediction['probability']:.2f})"
    ax.set_title(title)
    ax.margins(x=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
