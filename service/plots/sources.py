"""Pick what a plot draws out of a finished job's result document, or say why it can't."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from service.errors import ConflictError, invalid

GLOBAL_HINT = "run POST /v1/models/{name}/global with methods including '%s'"
ADVERSE_ACTION = "adverse_action"
MAX_NAMED = 8


def local_shap(document: dict[str, Any], index: int) -> dict[str, Any]:
    """The SHAP explanation of instance ``index`` of an explain job (against the reference
    rows) or of an adverse-action job (against its policy baseline, as its reasons are),
    with the ``title`` and ``against`` lines that say what it shows."""
    results = document.get("results")
    if not isinstance(results, list):
        raise invalid(
            ("query", "job_id"), "not an explain or adverse-action job: a waterfall needs one"
        )
    if index >= len(results):
        raise invalid(("query", "index"), f"the job has {len(results)} instances")
    if document.get("kind") == ADVERSE_ACTION:
        return _decision_shap(results[index])
    shap = (results[index].get("explanations") or {}).get("shap")
    if shap is None:
        raise invalid(("query", "job_id"), "the job has no SHAP explanation; request 'shap'")
    prediction = results[index].get("prediction") or {}
    favourable = _favourable(prediction)
    if favourable is None:
        title = "Why this prediction" + (
            f": {prediction['value']:.4g}" if _finite(prediction.get("value")) else ""
        )
    else:
        title = _decision_title(
            prediction["label"], favourable, prediction["probability"], prediction["threshold"]
        )
    reference = shap.get("reference") or {}
    against = f"against {reference.get('rows', '?')} reference rows: {reference.get('source', '')}"
    return {**shap, "title": title, "against": against, "favourable_class": favourable}


def _decision_shap(decision: dict[str, Any]) -> dict[str, Any]:
    attribution = decision.get("attribution") or {}
    if attribution.get("attributions") is None:
        raise invalid(("query", "job_id"), "this decision carries no attributions to draw")
    favourable = attribution.get("favourable_class") or "the favourable class"
    title = _decision_title(
        decision["decision"], favourable, decision["score"], decision["threshold"]
    )
    against = f"against the policy baseline of the reasons: {decision['baseline']['description']}"
    return {**attribution, "title": title, "against": against, "favourable_class": favourable}


def _favourable(prediction: dict[str, Any]) -> str | None:
    """The class whose probability ``prediction['probability']`` is (None: regression)."""
    probabilities, label = prediction.get("probabilities"), prediction.get("label")
    if not probabilities or label is None or not _finite(prediction.get("probability")):
        return None
    if prediction["probability"] >= prediction.get("threshold", 0.5):
        return str(label)
    return next((str(c) for c in probabilities if c != label), str(label))


def _decision_title(decision: str, favourable: str, probability: Any, threshold: Any) -> str:
    title = f"Why this decision: {decision}"
    if _finite(probability) and _finite(threshold):
        title += f" (probability of {favourable} {probability:.2f}, threshold {threshold:.2f})"
    return title


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


def require_finite(what: str, values: Iterable[tuple[str, Any]]) -> None:
    """409 naming the entries of ``what`` that have no finite value (a null or NaN in the
    job's result): such a plot would be wrong, so it is not drawn."""
    missing = list(dict.fromkeys(name for name, value in values if not _finite(value)))
    if missing:
        named = ", ".join(missing[:MAX_NAMED]) + (" ..." if len(missing) > MAX_NAMED else "")
        raise ConflictError(
            f"cannot draw {what}: the job's result has no finite value for {named} "
            "(null/NaN: the quantity was undefined for the data used)"
        )


def space_label(space: str, favourable: str | None = None) -> str:
    target = favourable or "the favourable class"
    return {
        "probability": f"probability of {target}",
        "log_odds": f"log-odds of {target}",
    }.get(space, "model output")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
