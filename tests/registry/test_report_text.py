"""The registration report as the CLI prints it, and refusals one issue a line."""

from __future__ import annotations

from service.errors import InvalidRequestError, Issue
from service.registry.report import (
    DataFileReport,
    Orientation,
    Performance,
    RegistrationReport,
    ShapSummary,
)
from service.report_text import render_refusal, render_report


def test_the_report_is_one_topic_a_line() -> None:
    report = RegistrationReport(
        task="binary_classification",
        data=[
            DataFileReport(role="reference", file="reference.csv", rows=200, labelled=True),
            DataFileReport(role="evaluation", file="evaluation.csv", rows=300, labelled=True),
        ],
        orientation=Orientation(
            positive_class="bad",
            declared_by="artifact.positive_class",
            favourable_class="good",
            checked_on="evaluation.csv",
        ),
        evaluation=Performance(
            file="evaluation.csv",
            rows=300,
            roc_auc=0.75,
            accuracy=0.7,
            threshold=0.5,
            base_rate=0.7,
        ),
        shap={
            "log_odds": ShapSummary(
                algorithm="tree",
                self_check_error=2e-9,
                self_check_tolerance=1e-6,
                background={"rows": 200, "selection": "all reference rows"},
            ),
            "probability": ShapSummary(algorithm="sampling", fallback_reason="tree: no"),
        },
        methods=["lime", "shap"],
        warnings=["SHAP in probability space uses sampling: tree: no"],
    )
    document = {
        "name": "m",
        "version": "0123456789abcdef",
        "created": False,
        "report": report.model_dump(mode="json"),
    }
    assert render_report(document).splitlines() == [
        "m 0123456789abcdef already registered",
        "  task               binary_classification",
        "  reference data     reference.csv: 200 rows, labelled",
        "  evaluation data    evaluation.csv: 300 rows, labelled",
        "  orientation        scores 'bad' (artifact.positive_class), favourable 'good'; "
        "checked on evaluation.csv",
        "  performance        evaluation.csv, 300 rows: ROC AUC 0.7500, accuracy 0.7000 at "
        "threshold 0.5, base rate 0.7000",
        "  shap log_odds      tree (self-check error 2e-09, tolerance 1e-06), background 200 "
        "rows (all reference rows)",
        "  shap probability   sampling; fallback: tree: no",
        "  methods            lime, shap",
        "  warning            SHAP in probability space uses sampling: tree: no",
    ]


def test_a_refusal_prints_each_issue_with_its_place() -> None:
    error = InvalidRequestError(
        [
            Issue(("body", "evaluation", 3, "income"), "evaluation.csv row 3, column 'income': x"),
            Issue(("manifest", "artifact", "positive_class"), "inverted"),
        ]
    )
    assert render_refusal(error).splitlines() == [
        "error: evaluation.csv row 3, column 'income': x",
        "error: manifest.artifact.positive_class: inverted",
    ]
    assert render_refusal(ValueError("plain")) == "error: plain"
