"""Request and response bodies of adverse-action decisions, batches and receipts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.adverse.options import AdverseActionOptions
from service.explainers.base import checked
from service.gateway.schemas import APPLICANT_EXAMPLE, Attribution, FeatureChange

Value = str | float


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AdverseActionRequest(_Request):
    applicant: dict[str, Any] = Field(
        ...,
        description="The application: feature -> value.",
        json_schema_extra=checked("matches the model's feature schema"),
    )
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
    applicants: list[dict[str, Any]] = Field(
        ..., min_length=1, json_schema_extra=checked("each matches the model's feature schema")
    )
    application_ids: list[str] | None = Field(
        None,
        description="The lender's reference per applicant (same length as applicants).",
        json_schema_extra=checked("as many as applicants"),
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
    share: float | None = Field(
        None,
        description="Its share of the total push toward denial (all features); absent only "
        "in receipts issued before reasons had to be material.",
    )
    features: list[ReasonFeature]


class OmittedReason(BaseModel):
    code: str
    feature: str
    contribution: float = Field(..., description="Push toward denial (log-odds).")
    share: float = Field(..., description="Share of the total push toward denial.")
    why: Literal["immaterial", "beyond max_reasons"]


class Materiality(BaseModel):
    min_reason_share: float = Field(
        ..., description="A reason is stated only if its share reaches this (request or manifest)."
    )
    total_toward_denial: float = Field(
        ..., description="Sum of every feature's push toward denial (log-odds), protected ones too."
    )
    omitted: list[OmittedReason] = Field(..., description="Reasons not stated, and why.")
    note: str | None = Field(
        None,
        description="Set when no reason is material (the largest is stated anyway) or none "
        "can be stated.",
    )


class BaselineInfo(BaseModel):
    kind: Literal["approved", "reference"]
    rows: int
    description: str


class BackgroundUsed(BaseModel):
    rows: int = Field(..., description="Rows the attribution was measured against.")
    selection: str = Field(
        ..., description="How they were chosen: all baseline rows, or a seeded sample."
    )


class AttributionInfo(BaseModel):
    method: Literal["tree", "linear", "exact", "sampling"] = Field(
        ..., description="tree (TreeSHAP), linear, exact (enumeration) or sampling."
    )
    output_space: str
    favourable_class: str | None = Field(None, description="The class the output space scores.")
    base_value: float = Field(..., description="Mean model output over the background.")
    background: BackgroundUsed
    implementation: Literal["native", "shap"] | None = Field(
        None, description="TreeSHAP only: the service's engine or shap's TreeExplainer."
    )
    fallback_reason: str | None = Field(
        None, description="Why an exact algorithm (or the native engine) was not used."
    )
    attributions: list[Attribution] | None = Field(
        None,
        description="SHAP value of every raw feature against the baseline (positive: toward "
        "the favourable class); what /v1/plots/waterfall draws for this job.",
    )


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
    materiality: Materiality | None = Field(
        None, description="How the reasons were chosen (denials only)."
    )
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


class ReceiptSignature(BaseModel):
    algorithm: Literal["Ed25519"]
    key_id: str = Field(..., description="The public key in /v1/receipts/keys that verifies it.")
    value: str = Field(
        ...,
        description="Base64 Ed25519 signature of the bytes 'xai-receipt/v1\\n' followed by "
        "the receipt without 'signature' as canonical JSON (keys sorted at every level, no "
        "whitespace, UTF-8, shortest round-trip floats).",
    )


class Receipt(BaseModel):
    receipt_id: str
    tenant: str | None = Field(
        None,
        description="Who the receipt belongs to (absent only on receipts written before "
        "tenants: those belong to 'default').",
    )
    issued_at: float
    model: str
    version: str
    content_hash: str
    manifest_hash: str
    job_id: str
    content_key: str | None = Field(
        None, description="Content key of the job; the receipt id is derived from it."
    )
    index: int
    seed: int
    row_seed: int
    request: ReceiptRequest
    baseline: BaselineInfo
    response: AdverseActionDecision
    signature: ReceiptSignature | None = Field(
        None,
        description="Signed when written (absent only on receipts written before signing, "
        "which never verify).",
    )
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
    signature_valid: bool = Field(
        ..., description="The record is exactly what a key of /v1/receipts/keys signed."
    )
    key_id: str | None = Field(..., description="The key the receipt names as its signer.")
    receipt_id_valid: bool = Field(
        ...,
        description="The id derives from the stored request, tenant, model and seeds (keyed "
        "with the server secret).",
    )
    match: bool = Field(
        ...,
        description="Signature and id are valid, and the replayed decision, score, reasons, "
        "proxy warning and evidence are the same. Never true for an altered record.",
    )
    model_changed: bool = Field(
        False,
        description="A remote model: the endpoint no longer answers as it did for this "
        "decision (its fingerprint differs), so the decision could not be replayed.",
    )
    model_changed_detail: str | None = None
    differences: list[Difference] = Field(..., description="Where the replay differs.")
    recourse_match: bool = Field(..., description="The recourse options (and notice) too.")
    recourse_differences: list[Difference]
    recourse_note: str | None = None
    problem: str | None = Field(
        None, description="Why the record was not replayed (signature or id invalid)."
    )
    replayed_with: dict[str, Any] | None = Field(
        None, description="Model version and seeds of the replay (absent when not replayed)."
    )


class PublicKey(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"]
    public_key: str = Field(..., description="The raw 32-byte Ed25519 public key, base64.")
    current: bool = Field(..., description="Signs new receipts; the others verify older ones.")


class ReceiptKeys(BaseModel):
    algorithm: Literal["Ed25519"]
    signed_bytes: str = Field(..., description="What a signature covers.")
    keys: list[PublicKey]
