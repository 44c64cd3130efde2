"""Principal reasons: denial-ward contributions grouped by reason code, protected features
held out, and only the material ones stated.

A reason is *material* when its push toward denial is at least ``min_reason_share`` of the
total push toward denial (every feature's, protected ones included: the same total the
proxy warning divides by). Reg B asks a creditor for the *principal* reasons of a denial;
a reason carrying a sliver of the push beside one carrying most of it is not one, and
stating it misleads the applicant about what to change. When no reason is material (the
push is spread thin), the largest one is still stated, flagged in ``materiality.note``:
a denial must state its principal reason, and the largest is that by definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.adverse.baseline import Baseline
from service.registry.loaded import LoadedModel
from service.registry.manifest import Feature, ReasonCode

# contributions below this (log-odds) are numerical noise, not a push toward denial
NOISE = 1e-9
# shares are compared with this slack so that a reason at exactly the threshold counts
SHARE_SLACK = 1e-12


@dataclass(frozen=True)
class Contribution:
    """One raw feature's push toward denial (positive) or approval (negative)."""

    feature: str
    value: Any
    toward_denial: float


def denial_push(contributions: list[Contribution]) -> float:
    """The total push toward denial: the sum of every feature's denial-ward contribution."""
    return sum(c.toward_denial for c in contributions if c.toward_denial > NOISE)


def reason_code(feature: Feature, value: Any, position: float) -> ReasonCode | None:
    """The catalogue entry for ``feature`` at the applicant's ``value``: the statement of
    the value's category group where the manifest has one, else the directional statement
    for the applicant's side of the baseline (``position``), else the feature's reason."""
    if feature.reason_by_category:
        category = str(value)
        for entry in feature.reason_by_category:
            if category in entry.categories:
                return entry
        return feature.reason
    if position > 0 and feature.reason_if_higher is not None:
        return feature.reason_if_higher
    if position < 0 and feature.reason_if_lower is not None:
        return feature.reason_if_lower
    return feature.reason


def ranked_reasons(
    model: LoadedModel, baseline: Baseline, contributions: list[Contribution]
) -> list[dict[str, Any]]:
    """Every candidate reason, largest push first: denial-ward pushes of non-protected
    features grouped by code (features sharing a code count once, summed)."""
    grouped: dict[str, dict[str, Any]] = {}
    for item in contributions:
        feature = model.manifest.feature(item.feature)
        if feature.protected or item.toward_denial <= NOISE:
            continue
        position = baseline.position(model, item.feature, item.value)
        code = reason_code(feature, item.value, position)
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
        top = entry["features"][0]
        reasons.append(
            {
                "code": entry["code"],
                "statement": entry["statement"],
                "feature": top["feature"],
                "value": top["value"],
                "contribution": sum(f["contribution"] for f in entry["features"]),
                "features": entry["features"],
            }
        )
    reasons.sort(key=lambda r: (-r["contribution"], r["code"]))
    return reasons


def principal_reasons(
    model: LoadedModel,
    baseline: Baseline,
    contributions: list[Contribution],
    max_reasons: int,
    min_share: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """At most ``max_reasons`` material reasons (ranked), and the ``materiality`` report:
    the threshold, the total push, the reasons left out and why."""
    total = denial_push(contributions)
    ranked = ranked_reasons(model, baseline, contributions)
    for reason in ranked:
        reason["share"] = reason["contribution"] / total
    material = [r for r in ranked if r["share"] >= min_share - SHARE_SLACK]
    stated = material[:max_reasons]
    note = None
    if not ranked:
        note = "no feature that may be stated as a reason pushed toward denial"
    elif not stated:
        stated = ranked[:1]
        note = (
            f"no reason carries {100 * min_share:g}% of the push toward denial; the largest is "
            "stated, because a denial must state its principal reason"
        )
    chosen, material_codes = {r["code"] for r in stated}, {r["code"] for r in material}
    omitted = [
        {
            "code": r["code"],
            "feature": r["feature"],
            "contribution": r["contribution"],
            "share": r["share"],
            "why": "beyond max_reasons" if r["code"] in material_codes else "immaterial",
        }
        for r in ranked
        if r["code"] not in chosen
    ]
    materiality = {
        "min_reason_share": min_share,
        "total_toward_denial": total,
        "omitted": omitted,
        "note": note,
    }
    return [{"rank": i + 1, **r} for i, r in enumerate(stated)], materiality
