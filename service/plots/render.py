"""Figures without pyplot (no global state, safe in threads), rendered to SVG or PNG bytes."""

from __future__ import annotations

import io
import math
from typing import Any, Literal

import matplotlib
from matplotlib.figure import Figure

PlotFormat = Literal["svg", "png"]
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png"}
# Text stays text in SVG (searchable, selectable); ids are stable across runs.
STYLE = {"svg.hashsalt": "xai-service", "svg.fonttype": "none", "font.size": 9}
POSITIVE, NEGATIVE, NEUTRAL = "#c0392b", "#1f77b4", "#555555"
MAX_LABEL = 48

# rcParams are process-wide; the gateway only ever plots in this one style.
matplotlib.rcParams.update(STYLE)


def figure(width: float, height: float) -> Figure:
    """A new figure of ``width`` x ``height`` inches, laid out automatically."""
    return Figure(figsize=(width, height), layout="constrained", dpi=100)


def to_bytes(fig: Figure, fmt: PlotFormat) -> bytes:
    """SVG or PNG bytes; identical figures give identical bytes (no timestamps)."""
    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buffer, format=fmt, metadata=metadata, dpi=110 if fmt == "png" else None)
    return buffer.getvalue()


def readable(name: str) -> str:
    """A feature name for people: spaces for underscores, long names shortened."""
    text = name.replace("_", " ")
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def show_value(value: Any) -> str:
    """A feature's value as a short label (whole numbers without decimals)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}" if not value.is_integer() else str(int(value))
    text = str(value)
    return text if len(text) <= 32 else text[:31] + "…"
