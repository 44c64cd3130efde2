"""Options of the global explanation methods (validated, seeded, bounded for a job)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.explainers.base import MethodOptions, checked

FEATURES_RULE = "features of the model (ale: numeric ones)"
OUTPUT_RULE = "log_odds and probability apply to classifiers only"

GlobalMethod = Literal["permutation_importance", "shap_importance", "pdp", "ice", "ale"]
GLOBAL_METHODS: tuple[str, ...] = ("permutation_importance", "shap_importance", "pdp", "ice", "ale")
Metric = Literal["roc_auc", "accuracy", "neg_log_loss", "r2", "neg_mean_squared_error"]
CLASSIFIER_METRICS = ("roc_auc", "accuracy", "neg_log_loss")
CurveOutput = Literal["auto", "probability", "log_odds", "raw"]


class PermutationOptions(MethodOptions):
    """Score drop per raw feature when its column is shuffled, on labelled rows."""

    n_repeats: int = Field(5, ge=1, le=20, description="Shuffles per feature.")
    metric: Metric | None = Field(
        None,
        description="Score; default roc_auc (classifiers) or r2 (regression).",
        json_schema_extra=checked(
            "roc_auc, accuracy and neg_log_loss apply to classifiers, r2 and "
            "neg_mean_squared_error to regression"
        ),
    )
    max_rows: int | None = Field(
        None, ge=10, le=5000, description="Sample at most this many rows (seeded)."
    )
    correlation_threshold: float = Field(
        0.7, gt=0, le=1, description="Warn when two features' association reaches this."
    )


class ShapImportanceOptions(MethodOptions):
    """Mean |SHAP| per raw feature, and the per-row values a beeswarm needs."""

    max_rows: int | None = Field(None, ge=1, le=2000, description="Rows explained (seeded).")
    output: CurveOutput = Field(
        "auto",
        description="auto: log_odds (classifiers) or raw.",
        json_schema_extra=checked(OUTPUT_RULE),
    )


class CurveOptions(MethodOptions):
    """Partial dependence / ICE: the model's output as one feature moves over a grid."""

    features: list[str] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Default: every feature.",
        json_schema_extra=checked(FEATURES_RULE),
    )
    grid_resolution: int = Field(
        20, ge=2, le=50, description="Numeric grid points (quantiles 5%..95%)."
    )
    max_rows: int | None = Field(None, ge=1, le=2000, description="Rows averaged (seeded).")
    output: CurveOutput = Field(
        "auto",
        description="auto: probability (classifiers) or raw.",
        json_schema_extra=checked(OUTPUT_RULE),
    )


class IceOptions(CurveOptions):
    max_rows: int | None = Field(50, ge=1, le=500, description="Curves drawn (seeded rows).")


class AleOptions(MethodOptions):
    """Accumulated local effects of numeric features, centred, over quantile bins."""

    features: list[str] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Numeric features; default all.",
        json_schema_extra=checked(FEATURES_RULE),
    )
    bins: int = Field(10, ge=2, le=50, description="Quantile bins (fewer when values repeat).")
    max_rows: int | None = Field(None, ge=2, le=5000, description="Rows used (seeded).")
    output: CurveOutput = Field(
        "auto",
        description="auto: probability (classifiers) or raw.",
        json_schema_extra=checked(OUTPUT_RULE),
    )


class GlobalOptions(MethodOptions):
    seed: int | None = Field(
        None, ge=0, lt=2**32, description="Seed of sampling and shuffles; default from the key."
    )
    permutation_importance: PermutationOptions = Field(default_factory=PermutationOptions)
    shap_importance: ShapImportanceOptions = Field(default_factory=ShapImportanceOptions)
    pdp: CurveOptions = Field(default_factory=CurveOptions)
    ice: IceOptions = Field(default_factory=IceOptions)
    ale: AleOptions = Field(default_factory=AleOptions)


def curve_space(requested: str, is_classifier: bool) -> str:
    """The output space of curves: probability by default for classifiers."""
    if not is_classifier:
        return "raw"
    return "probability" if requested in ("auto", "raw") else requested
