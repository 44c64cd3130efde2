"""Request and response bodies of the HTTP API (the OpenAPI contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.explainers.anchor import AnchorOptions
from service.explainers.base import checked
from service.explainers.counterfactual import CounterfactualOptions
from service.explainers.crosscheck import FaithfulnessOptions
from service.explainers.lime import LimeOptions
from service.explainers.registry import method_names
from service.explainers.shap.options import ShapOptions
from service.gateway.global_schemas import GlobalRequest, GlobalResponse  # noqa: F401
from service.registry.report import RegistrationReport

MethodName = Literal[tuple(method_names())]  # type: ignore[valid-type]
INSTANCES_RULE = (
    "each instance matches the model's feature schema (GET /v1/models/{name}): every "
    "feature, of its type, within its range or categories"
)

APPLICANT_EXAMPLE: dict[str, Any] = {
    "status_of_existing_checking_account": "... < 0 DM",
    "duration_in_month": 48,
    "credit_history": "existing credits paid back duly till now",
    "purpose": "radio/television",
    "credit_amount": 5951,
    "savings_account_and_bonds": "... < 100 DM",
    "present_employment_since": "1 <= ... < 4 years",
    "installment_rate_in_percentage_of_disposable_income": 2,
    "personal_status_and_sex": "female : divorced/separated/married",
    "other_debtors_or_guarantors": "none",
    "present_residence_since": 2,
    "property": "real estate",
    "age_in_years": 22,
    "other_installment_plans": "none",
    "housing": "own",
    "number_of_existing_credits_at_this_bank": 1,
    "job": "skilled employee / official",
    "number_of_people_being_liable_to_provide_maintenance_for": 1,
    "telephone": "none",
    "foreign_worker": "yes",
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PredictRequest(_Request):
    instances: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        description="Applicants: raw feature name -> value.",
        json_schema_extra=checked(INSTANCES_RULE),
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"instances": [APPLICANT_EXAMPLE]}]})


class ExplainOptions(_Request):
    seed: int | None = Field(
        None,
        ge=0,
        lt=2**32,
        description="Seed of stochastic methods; default from the content key.",
    )
    shap: ShapOptions | None = None
    lime: LimeOptions | None = None
    anchor: AnchorOptions | None = None
    counterfactual: CounterfactualOptions | None = None
    agreement_k: int = Field(
        5, ge=1, le=50, description="Top-k features compared across methods (agreement block)."
    )
    faithfulness: bool | FaithfulnessOptions = Field(
        False, description="Run the deletion test (AOPC vs random orders) on each ranking."
    )


class ExplainRequest(_Request):
    instances: list[dict[str, Any]] = Field(
        ..., min_length=1, json_schema_extra=checked(INSTANCES_RULE)
    )
    methods: list[MethodName] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["shap"],
        min_length=1,
        json_schema_extra=checked(
            "methods the model supports (GET /v1/models/{name}: methods): anchor and "
            "counterfactual explain classifiers"
        ),
    )
    options: ExplainOptions = Field(default_factory=ExplainOptions)
    wait: float | None = Field(
        None, ge=0, description="Seconds to wait for the result before answering 202."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"instances": [APPLICANT_EXAMPLE], "methods": ["shap"], "options": {}, "wait": 10}
            ]
        }
    )


class Prediction(BaseModel):
    label: str | None = Field(None, description="Decided class (threshold applied).")
    probability: float | None = Field(None, description="Probability of the favourable class.")
    probabilities: dict[str, float] | None = None
    threshold: float | None = None
    value: float | None = Field(None, description="Regression output.")


class PredictResponse(BaseModel):
    model: str
    version: str
    content_hash: str
    job_id: str
    predictions: list[Prediction]


class Attribution(BaseModel):
    feature: str
    value: str | float
    contribution: float
    std_error: float | None = None


class ReferenceInfo(BaseModel):
    rows: int
    source: str


class ShapReference(ReferenceInfo):
    selection: str = Field(
        ..., description="How the background rows were chosen: all, or a seeded sample."
    )


class ShapEvidence(BaseModel):
    algorithm: Literal["tree", "linear", "exact", "sampling"]
    model_output: float = Field(..., description="f(x) in the output space.")
    additivity_error: float = Field(..., description="|f(x) - base_value - sum(contributions)|")
    permutations: int | None = None
    seed: int | None = None
    max_std_error: float | None = None
    implementation: Literal["native", "shap"] | None = Field(
        None, description="TreeSHAP only: the service's engine or shap's TreeExplainer."
    )
    fallback_reason: str | None = Field(
        None,
        description="Why an exact algorithm (or the native TreeSHAP engine) was not used.",
    )


class ShapExplanation(BaseModel):
    base_value: float
    output_space: Literal["log_odds", "probability", "raw"]
    perturbation: Literal["interventional"]
    reference: ShapReference
    attributions: list[Attribution]
    evidence: ShapEvidence


class LimeWeight(BaseModel):
    feature: str
    value: str | float = Field(..., description="The instance's value of the feature.")
    condition: str = Field(..., description="e.g. 'duration_in_month > 24', 'housing = rent'")
    weight: float


class LimeStability(BaseModel):
    runs: int
    mean_jaccard: float = Field(..., description="Mean pairwise overlap of selected features.")


class LimeEvidence(BaseModel):
    weighted_r2: float = Field(..., description="Fit of the surrogate on the weighted samples.")
    kernel_width: float
    samples: int
    effective_samples: float = Field(..., description="(sum w)^2 / sum w^2")
    seed: int
    discretize: bool
    feature_selection: str
    stability: LimeStability | None = None


class LimeExplanation(BaseModel):
    weights: list[LimeWeight]
    intercept: float
    surrogate_prediction: float
    model_prediction: float
    output_space: Literal["log_odds", "probability", "raw"]
    reference: ReferenceInfo
    evidence: LimeEvidence


class FeatureChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    feature: str
    from_: str | float = Field(..., alias="from", serialization_alias="from")
    to: str | float


class Counterfactual(BaseModel):
    changes: list[FeatureChange] = Field(..., description="Only the features that change.")
    probability: float = Field(..., description="Re-scored probability of the favourable class.")
    label: str


class CounterfactualEvidence(BaseModel):
    requested: int
    returned: int
    validity: float | None = Field(..., description="Share valid when re-scored (1.0).")
    changed_features: float | None = Field(..., description="Mean number of changed features.")
    distance: float | None = Field(..., description="Mean normalised distance to the applicant.")
    constraints_checked: list[str]
    dropped: int = Field(..., description="Candidates dropped by re-scoring or constraints.")
    shortfall_reason: str | None = Field(..., description="Why fewer than requested.")
    method: str
    seed: int
    searches: int


class CounterfactualExplanation(BaseModel):
    counterfactuals: list[Counterfactual]
    desired_class: str
    evidence: CounterfactualEvidence


class AnchorCondition(BaseModel):
    feature: str
    op: Literal["=", "<=", ">", "between"]
    value: str | float | None = Field(None, description="For =, <= and >.")
    values: list[float] | None = Field(None, description="For between: low < x <= high.")
    text: str


class AnchorFeatureEdges(BaseModel):
    feature: str
    source: Literal["request", "manifest", "quantiles"] = Field(
        ..., description="Cut points of the request or the manifest, or reference quantiles."
    )
    edges: list[float] = Field(..., description="Interval edges numeric conditions use.")


class AnchorDiscretisation(BaseModel):
    quantile_bins: int = Field(..., description="Bins of features without cut points.")
    features: list[AnchorFeatureEdges] = Field(..., description="One per numeric feature.")


class AnchorEvidence(BaseModel):
    precision_fresh: float = Field(..., description="Precision on samples the search never saw.")
    fresh_samples: int
    samples: int
    search_samples: int
    model_calls: int
    model_rows: int
    threshold: float
    threshold_met: bool
    beam_size: int
    delta: float
    epsilon: float
    seed: int
    coverage_rows: int
    protected_features_in_rule: list[str]
    discretisation: AnchorDiscretisation


class AnchorExplanation(BaseModel):
    rule: list[AnchorCondition]
    text: str
    precision: float
    coverage: float
    label: str
    evidence: AnchorEvidence


class Explanations(BaseModel):
    shap: ShapExplanation | None = None
    lime: LimeExplanation | None = None
    anchor: AnchorExplanation | None = None
    counterfactual: CounterfactualExplanation | None = None


class AgreementPair(BaseModel):
    methods: list[str]
    jaccard: float
    shared: list[str]
    only_first: list[str]
    only_second: list[str]


class Agreement(BaseModel):
    k: int
    top_features: dict[str, list[str]]
    pairs: list[AgreementPair]
    mean_jaccard: float
    agreed: list[str] = Field(..., description="In every method's top-k.")
    disputed: list[str] = Field(..., description="In some method's top-k but not all.")


class Faithfulness(BaseModel):
    method: str
    k: int
    output_space: str
    ranking: list[str]
    drops: list[float] = Field(..., description="Output drop after deleting the top 1..k.")
    random_drops: list[float]
    aopc: float
    random_aopc: float
    gap: float = Field(..., description="aopc - random_aopc; > 0: the ranking is informative.")
    random_orders: int
    reference_rows: int
    seed: int


class InstanceExplanation(BaseModel):
    prediction: Prediction
    explanations: Explanations
    agreement: Agreement | None = None
    faithfulness: list[Faithfulness] | None = None


class ExplainResponse(BaseModel):
    model: str
    version: str
    content_hash: str
    job_id: str
    seed: int
    results: list[InstanceExplanation]


JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobError(BaseModel):
    status_code: int
    message: str
    code: str | None = Field(
        None, description="model_changed, remote_unavailable, ... when the error has a name."
    )
    issues: list[dict[str, Any]] | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatusName
    progress: float
    location: str


class JobStatus(BaseModel):
    job_id: str
    kind: str
    model: str
    version: str
    status: JobStatusName
    progress: float = Field(..., ge=0, le=1)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None
    result: PredictResponse | ExplainResponse | GlobalResponse | AdverseActionBatchResult | None = (
        None
    )


class FeatureSchema(BaseModel):
    name: str
    type: Literal["numeric", "categorical", "ordinal"]
    description: str
    categories: list[str] | None = None
    range: tuple[float, float] | None = None
    integer: bool
    mutable: bool
    direction: Literal["increase", "decrease", "any"]
    protected: bool


class VersionSummary(BaseModel):
    version: str
    content_hash: str
    manifest_hash: str
    registered_at: str
    source: str


class ModelSummary(BaseModel):
    name: str
    description: str
    task: str
    latest_version: str
    versions: list[VersionSummary]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ShapBackgroundInfo(BaseModel):
    rows: int
    selection: str


class ShapChoice(BaseModel):
    algorithm: Literal["tree", "linear", "exact", "sampling"]
    fallback_reason: str | None = Field(
        ..., description="Why an exact algorithm (or the native TreeSHAP engine) was not used."
    )
    self_check_error: float | None = Field(
        ..., description="Worst error of the algorithm's self-check on reference rows."
    )
    self_check_tolerance: float | None = Field(
        ..., description="The tolerance it had to meet, from the model's own arithmetic."
    )
    background: ShapBackgroundInfo


class RemoteStatus(BaseModel):
    """A remote model's endpoint and whether it still answers as when it was registered."""

    protocol: Literal["open-inference-v2", "kserve-v1"]
    url: str
    model: str
    model_version: str | None
    output: Literal["probability", "margin"]
    fingerprint: str | None = Field(
        ..., description="sha256 of the endpoint's answers on the reference rows, rounded."
    )
    fingerprint_rows: int | None
    state: Literal["ok", "changed", "unreachable", "unknown"] = Field(
        ...,
        description="ok: answers match the fingerprint; changed: the model behind the "
        "endpoint changed since registration (jobs fail with 409); unreachable: no usable "
        "answer (jobs fail with 503).",
    )
    detail: str | None = None
    checked_at: str | None = None


class ModelDetail(ModelSummary):
    version: str = Field(..., description="The version described below (latest unless pinned).")
    classes: list[str] | None
    favourable_class: str | None
    decision_threshold: float
    artifact_format: str
    features: list[FeatureSchema]
    methods: list[str]
    shap_algorithm: str | None
    shap: dict[str, ShapChoice] = Field(
        default_factory=dict,
        description="Per output space (log_odds and probability, or raw): the SHAP algorithm "
        "chosen by default, its self-check and background.",
    )
    reference_rows: int
    metrics: dict[str, float]
    remote: RemoteStatus | None = Field(
        None, description="A remote model (artifact_format remote): its endpoint and state."
    )


class RegisteredModel(BaseModel):
    """A registered version and the report of its registration (the same as the CLI's)."""

    name: str
    version: str
    content_hash: str
    created: bool = Field(description="False: the same content was already registered.")
    report: RegistrationReport


class Health(BaseModel):
    status: str
    models: int | None = None
    detail: str | None = None


class ErrorResponse(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationIssue]


# adverse_schemas builds on the models above; JobStatus refers back to it
from service.gateway.adverse_schemas import AdverseActionBatchResult  # noqa: E402

JobStatus.model_rebuild()
