"""Options of an adverse-action decision."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field

from service.errors import Issue
from service.explainers.base import MethodOptions, checked
from service.registry.manifest import Manifest, PolicyBaseline, Task

NEEDS_CLASSIFIER = (
    "adverse-action decisions need a binary classifier (a decision with reasons for a "
    "denial); this model is a regression model: use /explain for its attributions"
)


class RecourseOptions(MethodOptions):
    """How recourse (counterfactuals that flip a denial) is searched."""

    enabled: bool = Field(True, description="Search for recourse for denied applicants.")
    count: int = Field(3, ge=1, le=10, description="Recourse options wanted.")
    method: Literal["random", "genetic"] = Field("random", description="DiCE search method.")
    time_budget: float = Field(
        5.0, gt=0, le=60, description="Seconds per search (at most two searches per applicant)."
    )


class AdverseActionOptions(MethodOptions):
    """How reasons are chosen. Defaults: at most 4 material reasons, manifest's baseline."""

    max_reasons: int = Field(4, ge=1, le=10, description="Most reasons given (Reg B: commonly 4).")
    min_reason_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A reason is stated only if it carries at least this share of the total "
        "push toward denial (when none does, the largest is stated and flagged); default: "
        "the manifest's min_reason_share (0.05 unless set).",
    )
    baseline: PolicyBaseline | None = Field(
        None,
        description="Population reasons are measured against; default: the manifest's.",
        json_schema_extra=checked("approved needs reference rows the version approves"),
    )
    proxy_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="A protected feature carrying more than this share of the push toward "
        "denial is disclosed in proxy_warning.",
    )
    recourse: RecourseOptions = Field(default_factory=RecourseOptions)
    seed: int | None = Field(
        None, ge=0, lt=2**32, description="Seed of the stochastic parts; default from the request."
    )


def request_issues(manifest: Manifest, options: AdverseActionOptions) -> list[Issue]:
    """What makes a decision request impossible on this model, found before it is queued."""
    if manifest.task is not Task.binary_classification:
        return [
            Issue(
                ("path", "name"),
                "adverse-action decisions need a binary classifier; this model is a regression",
            )
        ]
    if options.recourse.enabled and importlib.util.find_spec("dice_ml") is None:
        return [
            Issue(("body", "options", "recourse", "enabled"), "recourse needs dice-ml installed")
        ]
    return []
