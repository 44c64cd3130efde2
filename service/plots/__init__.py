"""Plots rendered from result documents (matplotlib, headless; nothing fetched).

:func:`render` is the one entry: a plot kind, a finished job's document and the query's
parameters in, SVG or PNG bytes out.
"""

from __future__ import annotations

from typing import Any, Literal

from service.plots.beeswarm import beeswarm
from service.plots.curves import accumulated, dependence
from service.plots.importance import importance
from service.plots.render import MEDIA_TYPES, PlotFormat, to_bytes
from service.plots.sources import feature_entry, global_section, local_shap
from service.plots.waterfall import waterfall

PlotKind = Literal["waterfall", "importance", "beeswarm", "pdp", "ale"]
__all__ = ["MEDIA_TYPES", "PlotFormat", "PlotKind", "render"]


def render(
    kind: str,
    document: dict[str, Any],
    fmt: PlotFormat = "svg",
    *,
    index: int = 0,
    feature: str | None = None,
    method: str | None = None,
    top: int = 15,
) -> bytes:
    """Draw ``kind`` from ``document``; an unsuitable document raises a 422 naming why."""
    if kind == "waterfall":
        fig = waterfall(local_shap(document, index), max_display=top)
    elif kind == "importance":
        wanted = (method,) if method else ("permutation_importance", "shap_importance")
        found, section = global_section(document, *wanted)
        fig = importance(found, section, top)
    elif kind == "beeswarm":
        _, section = global_section(document, "shap_importance")
        fig = beeswarm(section, top)
    elif kind == "pdp":
        found, section = global_section(document, "ice", "pdp")
        fig = dependence(section, feature_entry(section, feature), found)
    else:
        _, section = global_section(document, "ale")
        fig = accumulated(section, feature_entry(section, feature))
    return to_bytes(fig, fmt)
