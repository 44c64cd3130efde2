"""Request and response bodies of adverse-action decisions, batches and receipts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.adverse.options import AdverseActionOptions
from service.gateway.schemas import APPLICANT_EXAMPLE, FeatureChange

Value = str | float


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AdverseActionRequest(_Request):
    applicant: dict[str, Any] = Field(..., description="The application: feature -> value.")
    application_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The lender's reference for the application; recorded in the receipt.",
    )
    options: AdverseActionOptions = Field(default_factory=AdverseActionOptions)
    wait: float | None = Field(
        None, ge=0, description="Seconds to wait for the result before answering 202."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"applicant": APPLICANT_EXAMPLE, "application_id": "A-1001", "options": {}}
            ]
        }
    )


class AdverseActionBatchRequest(_Request):
    applicants: list[dict[str, Any]] = Field(..., min_length=1)
    application_ids: list[str] | None = Field(
        None, description="The lender's reference per applicant (same length as applicants)."
    )
    options: AdverseActionOptions = Field(default_factory=AdverseActionOptions)
    wait: float | None = Field(
        0, ge=0, description="Seconds to wait for the result before answering 202."
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"applicants": [APPLICANT_EXAMPLE], "options": {}}]}
    )


class ReasonFeature(BaseModel):
    feature: str
    value: Value
    contribution: float = Field(..., description="Push toward denial (log-odds).")


class Reason(BaseModel):
    rank: int
    code: str
    statement: str
    feature: str = Field(..., description="The feature contributing most under this code.")
    value: Value = Field(..., description="The applicant's value of that feature.")
    contribution: float = Field(
        ...,
        description="Push toward denial relative to the baseline (log-odds), summed over "
        "the features sharing this code.",
    )
    features: list[ReasonFeature]


class BaselineInfo(BaseModel):
    kind: Literal["approved", "reference"]
    rows: int
    description: str


class AttributionInfo(BaseModel):
    method: str = Field(..., description="tree (TreeSHAP), linear, exact or sampling.")
    output_space: str
    base_value: float = Field(..., description="Mean model output over the baseline.")


class ProxyFeature(BaseModel):
    feature: str
    value: Value
    contribution: float
    share: float = Field(..., description="Share of the total push toward denial.")


class ProxyWarning(BaseModel):
    features: list[ProxyFeature]
    threshold_share: float
    message: str


class RecourseChange(FeatureChange):
    text: str = Field(..., description="The change in plain words.")


class RecourseOption(BaseModel):
    changes: list[RecourseChange]
    text: str
    score: float = Field(..., description="Re-scored probability of the favourable class.")
    addresses: list[str] = Field(..., description="Codes of the stated reasons it addresses.")


class Recourse(BaseModel):
    options: list[RecourseOption]
    note: str | None = Field(None, description="Why there are none, or none addressing a reason.")


class FairnessProbe(BaseModel):
    feature: str
    value: Value
    values_tested: int
    changes_decision: bool
    values: list[Value] = Field(..., description="Values that alone change the decision.")


class AdverseActionEvidence(BaseModel):
    additivity_error: float
    recourse_validity: list[bool]
    fairness_probe: list[FairnessProbe]
    seed: int


class AdverseActionDecision(BaseModel):
    application_id: str | None = None
    decision: Literal["approved", "denied"]
    score: float = Field(..., description="Probability of the favourable class.")
    threshold: float
    baseline: BaselineInfo
    attribution: AttributionInfo
    reasons: list[Reason]
    proxy_warning: ProxyWarning | None
    recourse: Recourse | None = Field(..., description="Null for an approval or when disabled.")
    evidence: AdverseActionEvidence
    receipt_id: str
    notice: str | None = Field(..., description="The notice text for a denial.")


class AdverseActionResponse(AdverseActionDecision):
    model: str
    version: str
    content_hash: str
    job_id: str


class AdverseActionBatchResult(BaseModel):
    model: str
    version: str
    content_hash: str
    job_id: str
    kind: Literal["adverse_action"]
    seed: int
    results: list[AdverseActionDecision]


class ReceiptRequest(BaseModel):
    applicant: dict[str, Any]
    application_id: str | None
    options: dict[str, Any]


class Receipt(BaseModel):
    receipt_id: str
    issued_at: float
    model: str
    version: str
    content_hash: str
    manifest_hash: str
    job_id: str
    index: int
    seed: int
    row_seed: int
    request: ReceiptRequest
    baseline: BaselineInfo
    response: AdverseActionDecision
    fingerprint: str | None = Field(
        None,
        description="A remote model: the fingerprint (sha256 of its answers on the reference "
        "rows) of the endpoint the decision was made with.",
    )


class Difference(BaseModel):
    path: str
    stored: Any
    replayed: Any


class ReceiptVerification(BaseModel):
    receipt_id: str
    match: bool = Field(
        ..., description="Decision, score, reasons, proxy warning and evidence are the same."
    )
    model_changed: bool = Field(
        False,
        description="A remote model: the endpoint no longer answers as it did for this "
        "decision (its fingerprint differs), so the decision could not be replayed.",
    )
    model_changed_detail: str | None = None
    differences: list[Difference] = Field(..., description="Where they differ.")
    recourse_match: bool = Field(..., description="The recourse options (and notice) too.")
    recourse_differences: list[Difference]
    recourse_note: str | None = None
    replayed_with: dict[str, Any] = Field(..., description="Model version and seeds used.")
