"""The same model registered locally and remotely (served by MLServer) gives the same
predictions and the same explanations: every model-agnostic method, in-process."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.explainers.anchor import AnchorExplainer, AnchorOptions
from service.explainers.counterfactual import CounterfactualExplainer, CounterfactualOptions
from service.explainers.global_ import run_global
from service.explainers.lime import LimeExplainer, LimeOptions
from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.registry.loaded import LoadedModel, read_rows
from service.registry.remote.fingerprint import Fingerprint
from service.registry.remote.predictor import RemotePredictor
from service.registry.remote.spec import FINGERPRINT_FILE
from tests.conftest import DEMO_MODELS
from tests.remote.conftest import SMALL, Opaque, Pair

SEEDS = [11, 12, 13]


def opaque(model: LoadedModel) -> LoadedModel:
    return LoadedModel(version=model.version, predictor=Opaque(model.predictor))


def evaluation(model: LoadedModel) -> pd.DataFrame:
    data = model.manifest.evaluation_data
    assert data is not None
    return read_rows(model.version.file(data.path), model.manifest)


@pytest.mark.parametrize("name", [*DEMO_MODELS, SMALL])
def test_predictions_are_identical(pairs: dict[str, Pair], name: str) -> None:
    pair = pairs[name]
    rows = evaluation(pair.local)
    local, remote = pair.local.predictor, pair.remote.predictor
    assert isinstance(remote, RemotePredictor)
    np.testing.assert_array_equal(remote.probability(rows), local.probability(rows))
    np.testing.assert_allclose(remote.margin(rows), local.margin(rows), rtol=0, atol=1e-9)
    assert pair.remote.predictions(rows) == pair.local.predictions(rows)


def test_the_version_holds_the_fingerprint_of_the_answers(pairs: dict[str, Pair]) -> None:
    pair = pairs["german-credit"]
    stored = Fingerprint.from_json(pair.remote_version.file(FINGERPRINT_FILE).read_bytes())
    answers = pair.local.predictor.model.predict_proba(pair.local.reference)  # type: ignore[attr-defined]
    assert stored.outputs.shape == (200, 2)
    np.testing.assert_allclose(stored.outputs, answers, atol=1e-6)
    assert pair.remote.predictor.fingerprint() == stored.digest == Fingerprint.of(answers).digest
    assert stored.digest.startswith("sha256:")
    # the version id covers the fingerprint (and the data files, and the manifest)
    assert FINGERPRINT_FILE in pair.remote.manifest.data_files()


def test_sampling_shap_equals_local_and_brackets_tree_shap(pairs: dict[str, Pair]) -> None:
    pair = pairs["german-credit"]
    rows = evaluation(pair.local).iloc[:3]
    options = ShapOptions(algorithm="sampling")
    remote = ShapExplainer(pair.remote, ShapOptions()).explain(rows, SEEDS)
    local_sampling = ShapExplainer(pair.local, options).explain(rows, SEEDS)
    # TreeSHAP against the same 50 background rows as the sampling estimate
    tree = ShapExplainer(pair.local, ShapOptions(background_rows=50)).explain(rows, SEEDS)
    assert {r["evidence"]["algorithm"] for r in remote} == {"sampling"}
    assert {r["evidence"]["algorithm"] for r in tree} == {"tree"}
    for r, s, t in zip(remote, local_sampling, tree, strict=True):
        got, same, exact = (_by_feature(x) for x in (r, s, t))
        errors = {a["feature"]: a["std_error"] for a in r["attributions"]}
        for feature, value in got.items():
            # the same model evaluations: the same estimate (log-odds of the same numbers)
            assert value == pytest.approx(same[feature], abs=1e-9)
            # and within its reported standard error of the exact TreeSHAP value
            assert abs(value - exact[feature]) <= 4 * errors[feature] + 1e-6, feature
        assert r["base_value"] == pytest.approx(t["base_value"], abs=1e-9)
        assert r["evidence"]["model_output"] == pytest.approx(t["evidence"]["model_output"])


def test_exact_shap_is_identical(pairs: dict[str, Pair]) -> None:
    pair = pairs[SMALL]
    rows = evaluation(pair.local).iloc[:4]
    for space in ("probability", "log_odds"):
        options = ShapOptions(algorithm="exact", output=space)
        remote = ShapExplainer(pair.remote, options).explain(rows, SEEDS + [14])
        local = ShapExplainer(pair.local, options).explain(rows, SEEDS + [14])
        for r, loc in zip(remote, local, strict=True):
            assert r["evidence"]["algorithm"] == "exact"
            if space == "probability":  # the very same numbers in, the very same out
                assert _by_feature(r) == _by_feature(loc)
            else:  # logit of the probabilities vs the model's decision function
                for feature, value in _by_feature(r).items():
                    assert value == pytest.approx(_by_feature(loc)[feature], abs=1e-9)


def test_lime_is_identical(pairs: dict[str, Pair]) -> None:
    pair = pairs["german-credit-logit"]
    rows = evaluation(pair.local).iloc[:2]
    options = LimeOptions(samples=2000)
    remote = LimeExplainer(pair.remote, options).explain(rows, SEEDS[:2])
    local = LimeExplainer(pair.local, options).explain(rows, SEEDS[:2])
    for r, loc in zip(remote, local, strict=True):
        assert [w["feature"] for w in r["weights"]] == [w["feature"] for w in loc["weights"]]
        for a, b in zip(r["weights"], loc["weights"], strict=True):
            assert a["weight"] == pytest.approx(b["weight"], abs=1e-9)
        assert r["evidence"]["weighted_r2"] == pytest.approx(loc["evidence"]["weighted_r2"])
        assert r["model_prediction"] == pytest.approx(loc["model_prediction"], abs=1e-12)


def test_anchors_are_identical(pairs: dict[str, Pair]) -> None:
    pair = pairs[SMALL]
    rows = evaluation(pair.local).iloc[[0]]
    remote = AnchorExplainer(pair.remote, AnchorOptions()).explain(rows, SEEDS[:1])[0]
    local = AnchorExplainer(pair.local, AnchorOptions()).explain(rows, SEEDS[:1])[0]
    assert remote["rule"] == local["rule"] and remote["rule"]
    assert remote["precision"] == local["precision"]
    assert remote["evidence"]["precision_fresh"] == local["evidence"]["precision_fresh"]


def test_counterfactuals_are_valid_and_as_local(pairs: dict[str, Pair]) -> None:
    pair = pairs[SMALL]
    rows = evaluation(pair.local)
    denied = rows[pair.local.predictor.probability(rows) < 0.5].iloc[[0]]
    options = CounterfactualOptions(count=2, time_budget=20)
    remote = CounterfactualExplainer(pair.remote, options).explain(denied, SEEDS[:1])[0]
    local = CounterfactualExplainer(pair.local, options).explain(denied, SEEDS[:1])[0]
    assert remote["counterfactuals"], remote
    # re-scored by the remote model before they were returned
    assert remote["evidence"]["validity"] == 1.0
    assert all(c["label"] == "good" for c in remote["counterfactuals"])
    if (
        remote["evidence"]["shortfall_reason"] is None
        and local["evidence"]["shortfall_reason"] is None
    ):
        assert remote["counterfactuals"] == local["counterfactuals"]


def test_global_explanations_are_identical(pairs: dict[str, Pair]) -> None:
    pair = pairs[SMALL]
    options = {
        "permutation_importance": {"n_repeats": 3, "max_rows": 150},
        "pdp": {"features": ["duration_in_month", "housing"], "grid_resolution": 5},
        "ale": {"features": ["credit_amount"], "bins": 5},
    }
    methods = list(options)

    def run(model: LoadedModel) -> dict[str, Any]:
        def shap(raw: dict[str, Any]) -> ShapExplainer:
            return ShapExplainer(model, ShapOptions.model_validate(raw))

        return run_global(model, methods, options, [], None, 7, shap)

    remote, local = run(pair.remote), run(pair.local)
    assert _rounded(remote) == _rounded(local)


def test_adverse_action_decisions_are_identical(pairs: dict[str, Pair]) -> None:
    pair = pairs["german-credit-logit"]
    rows = evaluation(pair.local).iloc[:6]
    options = AdverseActionOptions(recourse=RecourseOptions(enabled=False))
    seeds = list(range(len(rows)))
    ids: list[str | None] = [None] * len(rows)
    remote = AdverseActionEngine(pair.remote, options).decide(rows, seeds, ids)
    same_work = AdverseActionEngine(opaque(pair.local), options).decide(rows, seeds, ids)
    exact = AdverseActionEngine(pair.local, options).decide(rows, seeds, ids)
    assert {d["decision"] for d in remote} == {"approved", "denied"}
    for r, s, e in zip(remote, same_work, exact, strict=True):
        assert r["decision"] == s["decision"] == e["decision"]
        assert r["score"] == s["score"] == e["score"]
        assert [x["code"] for x in r["reasons"]] == [x["code"] for x in s["reasons"]]
        assert r["evidence"]["fairness_probe"] == s["evidence"]["fairness_probe"]
        assert r["attribution"]["method"] == "sampling" and e["attribution"]["method"] == "linear"
        if r["reasons"]:  # the principal reason agrees with exact linear SHAP
            assert r["reasons"][0]["code"] == e["reasons"][0]["code"]


def _by_feature(explanation: dict[str, Any]) -> dict[str, float]:
    return {a["feature"]: a["contribution"] for a in explanation["attributions"]}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
