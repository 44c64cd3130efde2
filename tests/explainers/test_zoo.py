"""Every model of the zoo (tests/zoo.py): the service predicts what the library predicts
for the favourable class, and its SHAP values are exact — equal to brute-force
interventional Shapley values over the same background — in log-odds and probability
(raw for regression), with no fallback; adverse-action attributes with an exact algorithm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.explainers.shap import ShapExplainer, ShapOptions
from tests.explainers.shapley import exact_shapley
from tests.zoo import BUILDERS, ZooModel, build_zoo

KINDS = list(BUILDERS)
FLOAT32 = {"xgb-json", "xgb-ubj"}  # XGBoost sums float32 leaf values in float32
PROBE = [100, 250, 333]  # rows outside the reference rows


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ZooModel]]:
    # one native thread, as in a worker: OpenMP start-up per call dominates on a busy machine
    with threadpool_limits(1):
        yield build_zoo(Path(tmp_path_factory.mktemp("zoo")))


def probe(entry: ZooModel) -> pd.DataFrame:
    assert entry.loaded is not None
    rows = entry.data.iloc[PROBE][entry.loaded.manifest.feature_names]
    return entry.loaded.frame(rows.to_dict("records"))


def precision(kind: str) -> float:
    return 2e-5 if kind in FLOAT32 else 1e-9


@pytest.mark.parametrize("kind", KINDS)
def test_predictions_are_the_librarys_own_for_the_favourable_class(
    zoo: dict[str, ZooModel], kind: str
) -> None:
    entry = zoo[kind]
    model = entry.loaded
    assert model is not None
    frame = probe(entry)
    rows = pd.concat([frame, model.reference], ignore_index=True)
    if entry.regression:
        got = [p["value"] for p in model.predictions(rows)]
        np.testing.assert_allclose(got, entry.own(rows, "raw"), rtol=0, atol=1e-12)
        return
    predictions = model.predictions(rows)
    own = entry.own(rows, "probability")
    got = np.array([p["probability"] for p in predictions])
    np.testing.assert_allclose(got, own, rtol=0, atol=1e-6 if kind in FLOAT32 else 1e-12)
    favourable = model.manifest.favourable_class
    other = model.manifest.unfavourable_class
    assert [p["label"] for p in predictions] == [favourable if q >= 0.5 else other for q in own]
    # the favourable class is the one the training labels call favourable: its rows score
    # higher on average than the others
    labels = entry.data.iloc[:200]
    scores = model.predictor.probability(model.frame(labels[model.manifest.feature_names]
                                                     .to_dict("records")))  # fmt: skip
    is_favourable = (labels["outcome"] == favourable).to_numpy()
    assert scores[is_favourable].mean() > scores[~is_favourable].mean() + 0.1


def spaces(entry: ZooModel) -> list[str]:
    return ["raw"] if entry.regression else ["log_odds", "probability"]


@pytest.mark.parametrize("kind", KINDS)
def test_shap_equals_brute_force_shapley_in_every_output_space(
    zoo: dict[str, ZooModel], kind: str
) -> None:
    entry = zoo[kind]
    model = entry.loaded
    assert model is not None
    frame = probe(entry)
    names = model.manifest.feature_names
    for space in spaces(entry):
        explainer = ShapExplainer(model, ShapOptions(output=space))
        summary = explainer.summary()
        assert summary["algorithm"] in ("tree", "exact"), (space, summary)
        assert summary["fallback_reason"] is None, (space, summary)
        assert summary["self_check_error"] <= summary["self_check_tolerance"]
        assert summary["background"] == {"rows": 60, "selection": "all 60 reference rows"}
        if space in ("log_odds", "raw") and kind != "rf-classifier":
            assert (explainer.algorithm, explainer.implementation) == ("tree", "native")
        results = explainer.explain(frame, seeds=[0] * len(frame))
        for i, result in enumerate(results):
            phi, base = exact_shapley(
                lambda f, s=space: entry.own(f, s), frame.iloc[[i]], model.reference
            )
            got = {a["feature"]: a["contribution"] for a in result["attributions"]}
            np.testing.assert_allclose(
                [got[n] for n in names], phi, rtol=0, atol=precision(kind), err_msg=space
            )
            assert result["base_value"] == pytest.approx(base, abs=precision(kind))
            assert result["evidence"]["additivity_error"] <= precision(kind)
            assert result["reference"]["rows"] == 60
        assert max(abs(a["contribution"]) for r in results for a in r["attributions"]) > 1e-3


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "rf-regressor"])
def test_adverse_action_attributes_with_an_exact_algorithm(
    zoo: dict[str, ZooModel], kind: str
) -> None:
    model = zoo[kind].loaded
    assert model is not None
    engine = AdverseActionEngine(
        model, AdverseActionOptions(recourse=RecourseOptions(enabled=False))
    )
    frame = probe(zoo[kind])
    documents = engine.decide(frame, seeds=[1] * len(frame), application_ids=[None] * 3)
    for document in documents:
        attribution = document["attribution"]
        assert attribution["method"] in ("tree", "exact")
        assert "fallback_reason" not in attribution
        baseline_rows = document["baseline"]["rows"]
        assert attribution["background"] == {
            "rows": baseline_rows,
            "selection": f"all {baseline_rows} baseline rows",
        }
        assert document["evidence"]["additivity_error"] <= precision(kind)
    # the contributions are against the baseline: brute force over the same rows
    names = model.manifest.feature_names
    denied = [i for i, d in enumerate(documents) if d["decision"] == "denied"]
    for i in denied[:1]:
        phi, _ = exact_shapley(
            lambda f: zoo[kind].own(f, "log_odds"), frame.iloc[[i]], engine.baseline.rows
        )
        toward_denial = {
            f["feature"]: f["contribution"] for r in documents[i]["reasons"] for f in r["features"]
        }
        for name, contribution in toward_denial.items():
            assert contribution == pytest.approx(-phi[names.index(name)], abs=precision(kind))
