"""Anchors' discretisation: on a model driven by one numeric threshold that falls inside a
quartile bin, no quartile rule reaches 0.95; finer quantiles or a cut point at the
threshold (manifest or request) do, and the evidence says which edges were used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from service.errors import InvalidRequestError
from service.explainers.anchor import AnchorExplainer, AnchorOptions
from service.registry.loaded import LoadedModel
from tests.adverse.lenders import register

THRESHOLD = 62.5  # the tree's split: approve when x > 62.5
APPLICANT = {"x": 70.0, "z": 0.3, "c": "a"}


def one_threshold_model(root: Path, cut_points: list[float] | None = None) -> LoadedModel:
    rng = np.random.default_rng(11)
    n = 600
    data = pd.DataFrame(
        {
            "x": rng.integers(0, 101, n).astype(float),
            "z": rng.normal(0, 1, n).round(2),
            "c": rng.choice(["a", "b"], n),
        }
    )
    data["outcome"] = np.where(data["x"] > THRESHOLD, "yes", "no")
    encode = ColumnTransformer(
        [("numbers", "passthrough", ["x", "z"]), ("c", OneHotEncoder(), ["c"])]
    )
    pipeline = Pipeline([("encode", encode), ("tree", DecisionTreeClassifier(max_depth=1))])
    pipeline.fit(data[["x", "z", "c"]], data["outcome"])
    x: dict[str, Any] = {"name": "x", "type": "numeric", "range": [0, 100]}
    if cut_points is not None:
        x["cut_points"] = cut_points
    manifest = {
        "name": "one-threshold",
        "task": "binary_classification",
        "target": "outcome",
        "classes": ["no", "yes"],
        "favourable_class": "yes",
        "artifact": {"path": "model.skops", "format": "skops"},
        "reference_data": {"path": "reference.csv"},
        "features": [
            {**x, "reason": {"code": "X01", "statement": "x too low"}},
            {"name": "z", "type": "numeric", "reason": {"code": "Z01", "statement": "z"}},
            {"name": "c", "type": "categorical", "categories": ["a", "b"],
             "reason": {"code": "C01", "statement": "c"}},
        ],
    }  # fmt: skip
    return register(root, manifest, pipeline, data.iloc[:300])


def explain(model: LoadedModel, **options: Any) -> dict[str, Any]:
    [result] = AnchorExplainer(model, AnchorOptions(**options)).explain(
        model.frame([APPLICANT]), [5]
    )
    return result


def edges_of(result: dict[str, Any], feature: str) -> dict[str, Any]:
    found = result["evidence"]["discretisation"]["features"]
    return next(f for f in found if f["feature"] == feature)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return one_threshold_model(tmp_path_factory.mktemp("anchor-bins"))


def test_quartile_bins_never_reach_the_threshold(model: LoadedModel) -> None:
    result = explain(model)
    assert result["label"] == "yes"
    assert result["evidence"]["threshold_met"] is False
    assert result["precision"] < 0.9 and result["evidence"]["precision_fresh"] < 0.9
    quartiles = edges_of(result, "x")
    assert quartiles["source"] == "quantiles" and len(quartiles["edges"]) == 3
    assert quartiles["edges"] == pytest.approx(
        np.percentile(model.reference["x"], [25, 50, 75]).tolist()
    )
    assert result["evidence"]["discretisation"]["quantile_bins"] == 4


def test_finer_quantiles_reach_it(model: LoadedModel) -> None:
    result = explain(model, quantile_bins=20)
    assert result["evidence"]["threshold_met"] is True
    assert [c["feature"] for c in result["rule"]] == ["x"]
    assert result["precision"] == 1.0 and result["evidence"]["precision_fresh"] == 1.0
    low = result["rule"][0]["values"][0] if result["rule"][0]["op"] == "between" else None
    assert low is None or low >= THRESHOLD
    assert len(edges_of(result, "x")["edges"]) == 19
    assert result["evidence"]["discretisation"]["quantile_bins"] == 20


def test_a_cut_point_at_the_policy_threshold_gives_the_rule(
    model: LoadedModel, tmp_path: Path
) -> None:
    by_request = explain(model, cut_points={"x": [THRESHOLD]})
    assert by_request["text"] == "x > 62.5"
    assert by_request["evidence"]["threshold_met"] is True and by_request["precision"] == 1.0
    share = float(np.mean(model.reference["x"] > THRESHOLD))
    assert by_request["coverage"] == pytest.approx(share)
    assert edges_of(by_request, "x") == {"feature": "x", "source": "request", "edges": [62.5]}
    assert edges_of(by_request, "z")["source"] == "quantiles"

    from_manifest = explain(one_threshold_model(tmp_path, cut_points=[THRESHOLD]))
    assert from_manifest["text"] == "x > 62.5"
    assert edges_of(from_manifest, "x") == {"feature": "x", "source": "manifest", "edges": [62.5]}


def test_bad_cut_points_are_refused_naming_the_feature(model: LoadedModel) -> None:
    for points, loc_feature, words in [
        ({"nope": [1.0]}, "nope", "unknown feature"),
        ({"c": [1.0]}, "c", "apply to numeric features"),
        ({"x": [150.0]}, "x", "within the feature's range"),
    ]:
        with pytest.raises(InvalidRequestError) as caught:
            AnchorExplainer(model, AnchorOptions(cut_points=points))
        [issue] = caught.value.issues
        assert issue.loc == ("body", "options", "anchor", "cut_points", loc_feature)
        assert words in issue.msg
    for points in ([], [float("inf")]):
        with pytest.raises(ValidationError):
            AnchorOptions(cut_points={"x": points})
    with pytest.raises(ValidationError):
        AnchorOptions(quantile_bins=1)
    # edges are a set: any order, repeats dropped
    assert AnchorOptions(cut_points={"x": [50.0, 10.0, 50.0]}).cut_points == {"x": [10.0, 50.0]}
