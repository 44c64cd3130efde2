"""The registration report: what a candidate version was checked for and what it offers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DataRole = Literal["reference", "evaluation"]  # also the upload field of each file
DeclaredBy = Literal["artifact.positive_class", "classes[1]", "classes_"]


class DataFileReport(BaseModel):
    role: DataRole
    file: str
    rows: int
    labelled: bool = Field(description="The file has the manifest's target column.")


class Orientation(BaseModel):
    """Which class the artifact's score is for, and whether labelled rows confirmed it."""

    positive_class: str = Field(description="The class the artifact's raw score is for.")
    declared_by: DeclaredBy = Field(
        description="Where that comes from: the manifest (boosters) or the estimator's classes_."
    )
    favourable_class: str
    checked_on: str | None = Field(
        None, description="The labelled file whose ROC AUC (>= 0.5) confirmed it; None: unchecked."
    )


class Performance(BaseModel):
    """The model's quality on the evaluation rows (classifiers: for the favourable class)."""

    file: str
    rows: int
    roc_auc: float | None = Field(None, description="Classifiers; None when one class only.")
    accuracy: float | None = Field(None, description="Classifiers: at the decision threshold.")
    threshold: float | None = None
    base_rate: float | None = Field(
        None, description="Classifiers: share of the favourable class among the labels."
    )
    r2: float | None = Field(None, description="Regression: coefficient of determination.")
    rmse: float | None = Field(None, description="Regression: root mean squared error.")


class ShapBackgroundRows(BaseModel):
    """The background rows SHAP is measured against."""

    rows: int | None = None
    selection: str | None = None


class ShapSummary(BaseModel):
    """How SHAP explains this version in one output space (``ShapExplainer.summary()``)."""

    model_config = ConfigDict(extra="allow")

    algorithm: str
    fallback_reason: str | None = None
    self_check_error: float | None = Field(
        None, description="Largest |f(x) - base - sum(phi)| of the exact algorithm's self-check."
    )
    self_check_tolerance: float | None = None
    background: ShapBackgroundRows = Field(default_factory=ShapBackgroundRows)


class RegistrationReport(BaseModel):
    """What registration checked and measured. Warnings say what could not be checked."""

    task: str
    data: list[DataFileReport]
    orientation: Orientation | None = Field(None, description="Classifiers only.")
    evaluation: Performance | None = Field(None, description="None without labelled evaluation.")
    shap: dict[str, ShapSummary] = Field(
        default_factory=dict, description="Per output space: log_odds, probability or raw."
    )
    remote: dict[str, Any] | None = Field(
        None,
        description="A remote model: its endpoint, the ROC AUC that confirmed the class order "
        "of its output, and the fingerprint of its answers on the reference rows.",
    )
    methods: list[str] = Field(default_factory=list, description="Explanation methods offered.")
    warnings: list[str] = Field(default_factory=list)
