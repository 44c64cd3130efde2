"""Principal reasons: denial-ward contributions grouped by reason code, protected
features held out (and disclosed when material)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.adverse.baseline import Baseline
from service.registry.loaded import LoadedModel
from service.registry.manifest import Feature, ReasonCode

# contributions below this (log-odds) are numerical noise, not a push toward denial
MATERIAL = 1e-9


@dataclass(frozen=True)
class Contribution:
    """One raw feature's push toward denial (positive) or approval (negative)."""

    feature: str
    value: Any
    toward_denial: float


def reason_code(feature: Feature, position: float) -> ReasonCode | None:
    """The catalogue entry for ``feature`` given where the applicant lies relative to the
    baseline: the directional statement where the manifest has one."""
    if position > 0 and feature.reason_if_higher is not None:
        return feature.reason_if_higher
    if position < 0 and feature.reason_if_lower is not None:
        return feature.reason_if_lower
    return feature.reason


def principal_reasons(
    model: LoadedModel,
    baseline: Baseline,
    contributions: list[Contribution],
    max_reasons: int,
) -> list[dict[str, Any]]:
    """At most ``max_reasons`` reasons, ranked by their summed push toward denial; features
    sharing a code count once. Protected features and approval-ward pushes are never reasons."""
    grouped: dict[str, dict[str, Any]] = {}
    for item in contributions:
        feature = model.manifest.feature(item.feature)
        if feature.protected or item.toward_denial <= MATERIAL:
            continue
        code = reason_code(feature, baseline.position(model, item.feature, item.value))
        if code is None:
            continue
        entry = grouped.setdefault(
            code.code, {"code": code.code, "statement": code.statement, "features": []}
        )
        entry["features"].append(
            {"feature": item.feature, "value": item.value, "contribution": item.toward_denial}
        )
    reasons = []
    for entry in grouped.values():
        entry["features"].sort(key=lambda f: -f["contribution"])
        total = sum(f["contribution"] for f in entry["features"])
        top = entry["features"][0]
        reasons.append(
            {
                "code": entry["code"],
                "statement": entry["statement"],
                "feature": top["feature"],
                "value": top["value"],
                "contribution": total,
                "features": entry["features"],
            }
        )
    reasons.sort(key=lambda r: (-r["contribution"], r["code"]))
    return [{"rank": i + 1, **r} for i, r in enumerate(reasons[:max_reasons])]


def proxy_warning(
    model: LoadedModel, contributions: list[Contribution], share: float
) -> dict[str, Any] | None:
    """Protected features whose push toward denial exceeds ``share`` of the total push."""
    total = sum(c.toward_denial for c in contributions if c.toward_denial > MATERIAL)
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
