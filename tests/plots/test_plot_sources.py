"""What the plots say they show: the class a probability is of, the rows SHAP values are
against (reference rows, or the adverse-action policy baseline); and a result with nulls
(NaN) is refused with 409 naming what is missing, never drawn wrong or a 500."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.errors import ConflictError
from service.explainers.global_ import run_global
from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.plots import render
from service.registry.loaded import LoadedModel

MODEL = "german-credit-logit"


def svg_text(svg: bytes) -> str:
    return " ".join(re.findall(r">([^<>]+)<", svg.decode()))


@pytest.fixture(scope="module")
def explain_document(
    demo_models: dict[str, LoadedModel], applicant: dict[str, Any]
) -> dict[str, Any]:
    model = demo_models[MODEL]
    frame = model.frame([applicant])
    [shap] = ShapExplainer(model, ShapOptions()).explain(frame, [0])
    return {
        "results": [{"prediction": model.predictions(frame)[0], "explanations": {"shap": shap}}]
    }


@pytest.fixture(scope="module")
def decision_document(
    demo_models: dict[str, LoadedModel], applicant: dict[str, Any]
) -> dict[str, Any]:
    model = demo_models[MODEL]
    engine = AdverseActionEngine(
        model, AdverseActionOptions(recourse=RecourseOptions(enabled=False))
    )
    return {
        "kind": "adverse_action",
        "results": engine.decide(model.frame([applicant]), [0], [None]),
    }


@pytest.fixture(scope="module")
def global_document(demo_models: dict[str, LoadedModel]) -> dict[str, Any]:
    model = demo_models[MODEL]
    options = {
        "permutation_importance": {"n_repeats": 2},
        "shap_importance": {"max_rows": 40},
        "pdp": {"features": ["duration_in_month"], "grid_resolution": 5},
        "ale": {"features": ["credit_amount"], "bins": 4},
    }
    results = run_global(
        model,
        ["permutation_importance", "shap_importance", "pdp", "ale"],
        options,
        [],
        None,
        1,
        lambda o: ShapExplainer(model, ShapOptions(**o)),
    )
    return {"kind": "global", "results": results}


def test_the_waterfall_names_the_class_of_the_probability(explain_document: dict[str, Any]) -> None:
    prediction = explain_document["results"][0]["prediction"]
    assert prediction["label"] == "bad" and prediction["probability"] < 0.5
    text = svg_text(render("waterfall", explain_document))
    p = prediction["probability"]
    assert f"Why this decision: bad (probability of good {p:.2f}, threshold 0.50)" in text
    assert "against 200 reference rows" in text and "log-odds of good" in text


def test_the_waterfall_of_a_decision_is_against_its_policy_baseline(
    decision_document: dict[str, Any], explain_document: dict[str, Any]
) -> None:
    decision = decision_document["results"][0]
    text = svg_text(render("waterfall", decision_document))
    assert f"Why this decision: denied (probability of good {decision['score']:.2f}" in text
    assert "against the policy baseline of the reasons: reference applicants this version " in text
    # the bars are the decision's own attributions, the ones its reasons are made of
    top = decision["reasons"][0]
    assert f"{-top['features'][0]['contribution']:+.3f}" in text
    base = decision["attribution"]["base_value"]
    assert f"base {base:.3f}" in text
    # ... which differ from the explain job's (all reference rows) for the same feature
    shap = explain_document["results"][0]["explanations"]["shap"]
    other = next(a for a in shap["attributions"] if a["feature"] == top["feature"])
    assert abs(other["contribution"] + top["features"][0]["contribution"]) > 1e-3


def with_null(document: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = None
    return broken


NULLS = [
    ("importance", {}, ["results", "permutation_importance", "features", 0, "mean"]),
    ("importance", {}, ["results", "permutation_importance", "baseline_score"]),
    ("importance", {"method": "shap_importance"},
     ["results", "shap_importance", "features", 0, "mean_abs"]),
    ("beeswarm", {}, ["results", "shap_importance", "features", 0, "shap", 3]),
    ("pdp", {}, ["results", "pdp", "features", 0, "average", 2]),
    ("ale", {}, ["results", "ale", "features", 0, "values", 1]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "params", "path"), NULLS)
def test_a_null_in_a_global_result_is_a_409_naming_it(
    global_document: dict[str, Any], kind: str, params: dict[str, Any], path: list[Any]
) -> None:
    render(kind, global_document, **params)  # drawable as computed
    with pytest.raises(ConflictError) as caught:
        render(kind, with_null(global_document, path), **params)
    assert caught.value.status_code == 409
    assert "cannot draw" in caught.value.message and "null/NaN" in caught.value.message
    if path[-2] == 0 or path[-1] in ("mean", "mean_abs"):
        name = global_document["results"][path[1]]["features"][0]["feature"]
        assert name in caught.value.message


def test_all_null_permutation_importances_are_a_409(global_document: dict[str, Any]) -> None:
    broken = copy.deepcopy(global_document)
    section = broken["results"]["permutation_importance"]
    section["baseline_score"] = None
    for feature in section["features"]:
        feature.update(mean=None, std=None, importances=[None, None])
    with pytest.raises(ConflictError, match="cannot draw permutation importance"):
        render("importance", broken)


def test_a_null_contribution_is_not_drawn_in_a_waterfall(explain_document: dict[str, Any]) -> None:
    path = ["results", 0, "explanations", "shap", "attributions", 0, "contribution"]
    with pytest.raises(ConflictError, match="cannot draw the waterfall"):
        render("waterfall", with_null(explain_document, path))
