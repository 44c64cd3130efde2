"""Options of the SHAP method."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from service.explainers.base import MethodOptions, checked

OutputSpace = Literal["log_odds", "probability", "raw"]
Algorithm = Literal["tree", "linear", "exact", "sampling"]


class ShapOptions(MethodOptions):
    """How SHAP values are computed. Defaults: exact algorithm where one exists, log-odds."""

    algorithm: Literal["auto", "tree", "linear", "exact", "sampling"] = Field(
        "auto",
        description="auto: tree for tree models, linear for linear ones, else sampling; "
        "exact: enumerate all coalitions (at most 12 features).",
        json_schema_extra=checked(
            "tree and linear need a model of that structure, and must prove exact on its "
            "reference rows in the requested output space; exact needs at most 12 features"
        ),
    )
    output: Literal["auto", "log_odds", "probability", "raw"] = Field(
        "auto",
        description="auto: log_odds for classifiers, raw for regression.",
        json_schema_extra=checked("log_odds and probability apply to classifiers only"),
    )
    permutations: int = Field(
        32,
        ge=2,
        le=2048,
        multiple_of=2,
        description="Sampling only: permutations (antithetic pairs, even).",
    )
    background_rows: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Reference rows to use (a seeded sample when fewer); default all for "
        "tree and linear, all up to an evaluation budget for exact, 50 for sampling.",
    )

    @model_validator(mode="after")
    def _even(self) -> ShapOptions:
        if self.permutations % 2:
            raise ValueError("permutations must be even (antithetic pairs)")
        return self
