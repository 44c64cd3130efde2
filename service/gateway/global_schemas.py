"""Request and response bodies of global explanations (part of the OpenAPI contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.explainers.base import checked
from service.explainers.global_.options import GlobalMethod, GlobalOptions


class GlobalRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "methods": ["permutation_importance", "shap_importance", "pdp", "ale"],
                    "options": {
                        "permutation_importance": {"n_repeats": 5},
                        "pdp": {"features": ["duration_in_month", "housing"]},
                        "ale": {"features": ["duration_in_month", "credit_amount"]},
                    },
                    "wait": 30,
                }
            ]
        },
    )

    methods: list[GlobalMethod] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["permutation_importance", "shap_importance"],
        min_length=1,
        json_schema_extra=checked(
            "permutation_importance needs labelled rows: the version's evaluation set, or "
            "rows with labels"
        ),
    )
    options: GlobalOptions = Field(default_factory=GlobalOptions)
    rows: list[dict[str, Any]] | None = Field(
        None,
        min_length=1,
        description="Rows to explain over (raw feature -> value); default: the version's "
        "evaluation set (permutation importance) or reference data (the others).",
        json_schema_extra=checked("each row matches the model's feature schema"),
    )
    labels: list[str | float] | None = Field(
        None,
        description="Class (or value) of each row; permutation importance needs them.",
        json_schema_extra=checked(
            "one per row of rows; classes of the model (both of them for permutation "
            "importance) or numbers for regression"
        ),
    )
    wait: float | None = Field(
        None, ge=0, description="Seconds to wait for the result before answering 202."
    )


class DataUsed(BaseModel):
    rows: int
    source: str


class PermutationFeature(BaseModel):
    feature: str
    mean: float = Field(..., description="Mean score drop over the shuffles.")
    std: float
    importances: list[float] = Field(..., description="The drop of each shuffle.")


class CorrelationWarning(BaseModel):
    features: list[str]
    measure: Literal["spearman", "cramers_v", "correlation_ratio"]
    coefficient: float
    message: str


class PermutationImportance(BaseModel):
    metric: str
    baseline_score: float
    n_repeats: int
    seed: int
    data: DataUsed
    features: list[PermutationFeature]
    warnings: list[CorrelationWarning] = Field(
        ..., description="Strongly associated feature pairs (importance may be split)."
    )


class ShapFeature(BaseModel):
    feature: str
    mean_abs: float
    mean: float
    shap: list[float] = Field(..., description="SHAP value of each row (beeswarm).")
    values: list[str | float] = Field(..., description="The feature's value in each row.")


class ShapBackground(BaseModel):
    rows: int
    selection: str = Field(..., description="All reference rows, or a seeded sample.")


class ShapImportance(BaseModel):
    algorithm: str
    implementation: Literal["native", "shap"] | None = Field(
        None, description="TreeSHAP only: the service's engine or shap's TreeExplainer."
    )
    fallback_reason: str | None = Field(
        None, description="Why an exact algorithm (or the native engine) was not used."
    )
    background: ShapBackground = Field(..., description="The rows SHAP is measured against.")
    output_space: str
    base_value: float | None
    max_additivity_error: float | None
    data: DataUsed
    features: list[ShapFeature]


class DependenceCurve(BaseModel):
    feature: str
    kind: Literal["numeric", "categorical"]
    grid: list[str | float]
    average: list[float] = Field(..., description="Partial dependence at each grid point.")
    curves: list[list[float]] | None = Field(None, description="ICE: one curve per row.")


class Dependence(BaseModel):
    output_space: str
    data: DataUsed
    features: list[DependenceCurve]


class AleCurve(BaseModel):
    feature: str
    edges: list[float] = Field(..., description="Bin edges (quantiles of the feature).")
    values: list[float] = Field(..., description="Centred accumulated effect at each edge.")
    counts: list[int] = Field(..., description="Rows in each bin.")


class Ale(BaseModel):
    output_space: str
    data: DataUsed
    features: list[AleCurve]


class GlobalResults(BaseModel):
    permutation_importance: PermutationImportance | None = None
    shap_importance: ShapImportance | None = None
    pdp: Dependence | None = None
    ice: Dependence | None = None
    ale: Ale | None = None


class GlobalResponse(BaseModel):
    model: str
    version: str
    content_hash: str
    job_id: str
    kind: Literal["global"]
    seed: int
    methods: list[str]
    results: GlobalResults
