"""The registration report as the CLI prints it, and refusals one problem a line."""

from __future__ import annotations

from typing import Any

from service.errors import InvalidRequestError


def render_report(document: dict[str, Any]) -> str:
    """``name version registered|already registered`` then the report, one topic a line."""
    report = document["report"]
    state = "registered" if document["created"] else "already registered"
    lines = [f"{document['name']} {document['version']} {state}"]

    def add(topic: str, text: str) -> None:
        lines.append(f"  {topic:<18} {text}")

    add("task", report["task"])
    for data in report["data"]:
        labelled = "labelled" if data["labelled"] else "no labels"
        add(f"{data['role']} data", f"{data['file']}: {data['rows']} rows, {labelled}")
    orientation = report.get("orientation")
    if orientation:
        checked = orientation["checked_on"]
        add(
            "orientation",
            f"scores '{orientation['positive_class']}' ({orientation['declared_by']}), "
            f"favourable '{orientation['favourable_class']}'; "
            + (f"checked on {checked}" if checked else "NOT checked"),
        )
    evaluation = report.get("evaluation")
    if evaluation:
        add("performance", _performance(evaluation))
    for space, shap in report["shap"].items():
        add(f"shap {space}", _shap(shap))
    add("methods", ", ".join(report["methods"]) or "none")
    for warning in report["warnings"]:
        add("warning", warning)
    return "\n".join(lines)


def render_refusal(exc: Exception) -> str:
    """``error: ...`` lines: one per located issue (data-file issues name their place)."""
    if not isinstance(exc, InvalidRequestError):
        return f"error: {exc}"
    lines = []
    for issue in exc.issues:
        where = "" if issue.loc[:1] == ("body",) else ".".join(map(str, issue.loc)) + ": "
        lines.append(f"error: {where}{issue.msg}")
    return "\n".join(lines)


def _performance(evaluation: dict[str, Any]) -> str:
    head = f"{evaluation['file']}, {evaluation['rows']} rows: "
    if evaluation.get("r2") is not None or evaluation.get("rmse") is not None:
        return head + f"R^2 {_number(evaluation['r2'])}, RMSE {_number(evaluation['rmse'])}"
    return head + (
        f"ROC AUC {_number(evaluation['roc_auc'])}, accuracy {_number(evaluation['accuracy'])} "
        f"at threshold {evaluation['threshold']}, base rate {_number(evaluation['base_rate'])}"
    )


def _shap(shap: dict[str, Any]) -> str:
    text = shap["algorithm"]
    if shap.get("self_check_error") is not None:
        text += f" (self-check error {shap['self_check_error']:.2g}"
        if shap.get("self_check_tolerance") is not None:
            text += f", tolerance {shap['self_check_tolerance']:.2g}"
        text += ")"
    background = shap.get("background") or {}
    if background.get("rows") is not None:
        text += f", background {background['rows']} rows ({background.get('selection')})"
    if shap.get("fallback_reason"):
        text += f"; fallback: {shap['fallback_reason']}"
    return text


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
