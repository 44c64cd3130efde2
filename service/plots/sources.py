"""Pick what a plot draws out of a finished job's result document, or say why it can't."""

from __future__ import annotations

from typing import Any

from service.errors import invalid

GLOBAL_HINT = "run POST /v1/models/{name}/global with methods including '%s'"


def local_shap(document: dict[str, Any], index: int) -> dict[str, Any]:
    """The SHAP explanation of instance ``index`` of an explain job."""
    results = document.get("results")
    if not isinstance(results, list):
        raise invalid(("query", "job_id"), "not an explain job: a waterfall needs one")
    if index >= len(results):
        raise invalid(("query", "index"), f"the job has {len(results)} instances")
    shap = (results[index].get("explanations") or {}).get("shap")
    if shap is None:
        raise invalid(("query", "job_id"), "the job has no SHAP explanation; request 'shap'")
    return {**shap, "prediction": results[index].get("prediction") or {}}


def global_section(document: dict[str, Any], *methods: str) -> tuple[str, dict[str, Any]]:
    """(method, section) of the first of ``methods`` a global job computed."""
    results = document.get("results")
    if document.get("kind") != "global" or not isinstance(results, dict):
        raise invalid(("query", "job_id"), "not a global explanation job")
    for method in methods:
        if results.get(method) is not None:
            return method, results[method]
    raise invalid(("query", "job_id"), "the job has no such results: " + GLOBAL_HINT % methods[0])


def feature_entry(section: dict[str, Any], feature: str | None) -> dict[str, Any]:
    """One feature's entry in a curve section (the first when none is named)."""
    entries = section["features"]
    if not entries:
        raise invalid(("query", "feature"), "the job computed no feature")
    if feature is None:
        return entries[0]
    for entry in entries:
        if entry["feature"] == feature:
            return entry
    names = [e["feature"] for e in entries]
    raise invalid(("query", "feature"), f"not in the job's results; computed: {names}")


def space_label(space: str) -> str:
    return {
        "probability": "probability of the favourable class",
        "log_odds": "log-odds of the favourable class",
    }.get(space, "model output")
