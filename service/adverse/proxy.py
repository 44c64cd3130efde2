"""The proxy warning: protected features are never reasons, but one that carries a material
share of the push toward denial is disclosed for compliance review."""

from __future__ import annotations

from typing import Any

from service.adverse.reasons import Contribution, denial_push
from service.registry.loaded import LoadedModel


def proxy_warning(
    model: LoadedModel, contributions: list[Contribution], share: float
) -> dict[str, Any] | None:
    """Protected features whose push toward denial exceeds ``share`` of the total push."""
    total = denial_push(contributions)
    if total <= 0:
        return None
    flagged = [
        {
            "feature": c.feature,
            "value": c.value,
            "contribution": c.toward_denial,
            "share": c.toward_denial / total,
        }
        for c in contributions
        if model.manifest.feature(c.feature).protected and c.toward_denial / total > share
    ]
    if not flagged:
        return None
    names = ", ".join(f"{f['feature']} ({f['share']:.0%})" for f in flagged)
    return {
        "features": flagged,
        "threshold_share": share,
        "message": f"protected feature(s) {names} pushed materially toward denial; they are "
        "never given as reasons, but the model or a proxy relies on them: refer for "
        "compliance review",
    }
