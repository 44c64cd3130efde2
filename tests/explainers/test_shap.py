"""SHAP values are exact where the service claims exactness, and honest where sampled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io

from service.errors import InvalidRequestError
from service.explainers.shap import ShapExplainer, ShapOptions
from service.explainers.shap.attribution import Attributions
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore
from tests.conftest import ROOT
from tests.explainers.shapley import exact_shapley


def contributions(result: dict[str, Any], names: list[str]) -> np.ndarray:
    by_feature = {a["feature"]: a["contribution"] for a in result["attributions"]}
    return np.array([by_feature[n] for n in names])


@pytest.mark.parametrize(
    ("kind", "output", "algorithm"),
    [
        ("boosted", "log_odds", "tree"),
        ("forest", "probability", "tree"),
        ("logistic", "log_odds", "linear"),
        ("mlp", "log_odds", "exact"),
        ("logistic", "probability", "exact"),
    ],
)
def test_exact_algorithms_equal_brute_force_shapley(
    small_models: dict[str, LoadedModel],
    probe_rows: pd.DataFrame,
    kind: str,
    output: str,
    algorithm: str,
) -> None:
    model = small_models[kind]
    requested = "exact" if algorithm == "exact" else "auto"
    explainer = ShapExplainer(model, ShapOptions(output=output, algorithm=requested))
    assert explainer.algorithm == algorithm
    frame = model.frame(probe_rows.to_dict("records"))
    results = explainer.explain(frame, seeds=[0] * len(frame))
    names = model.manifest.feature_names
    for i, result in enumerate(results):
        phi, base = exact_shapley(
            lambda f: model.predictor.output(f, output), frame.iloc[[i]], model.reference
        )
        np.testing.assert_allclose(contributions(result, names), phi, atol=1e-6)
        assert result["base_value"] == pytest.approx(base, abs=1e-6)
        assert result["evidence"]["additivity_error"] < 1e-6
        assert result["output_space"] == output


def test_forest_log_odds_is_enumerated_exactly_not_passed_off_as_tree_shap(
    small_models: dict[str, LoadedModel], probe_rows: pd.DataFrame
) -> None:
    """A forest's trees sum to probabilities; in log-odds TreeSHAP does not apply, so the
    service enumerates the coalitions (5 features) and refuses an explicit 'tree'."""
    model = small_models["forest"]
    explainer = ShapExplainer(model, ShapOptions(output="log_odds"))
    assert explainer.algorithm == "exact" and explainer.fallback_reason is None
    frame = model.frame(probe_rows.iloc[:2].to_dict("records"))
    for i, result in enumerate(explainer.explain(frame, seeds=[0, 0])):
        phi, base = exact_shapley(
            lambda f: model.predictor.margin(f), frame.iloc[[i]], explainer.background.rows
        )
        np.testing.assert_allclose(contributions(result, model.manifest.feature_names), phi,
                                   atol=1e-9)  # fmt: skip
        assert result["base_value"] == pytest.approx(base, abs=1e-9)
    with pytest.raises(InvalidRequestError) as raised:
        ShapExplainer(small_models["forest"], ShapOptions(output="log_odds", algorithm="tree"))
    assert raised.value.issues[0].loc == ("body", "options", "shap", "algorithm")


@pytest.mark.parametrize("permutations", [32, 64])
def test_sampling_standard_errors_cover_the_true_error(
    small_models: dict[str, LoadedModel], probe_rows: pd.DataFrame, permutations: int
) -> None:
    """contribution +- 1.96 std_error covers the exact Shapley value for >= 90% of features
    over repeated seeds (default permutations and more)."""
    model = small_models["mlp"]
    explainer = ShapExplainer(model, ShapOptions(algorithm="sampling", permutations=permutations))
    assert explainer.algorithm == "sampling"
    frame = model.frame(probe_rows.iloc[:3].to_dict("records"))
    names = model.manifest.feature_names
    covered = []
    for i in range(len(frame)):
        exact, _ = exact_shapley(
            lambda f: model.predictor.margin(f), frame.iloc[[i]], model.reference
        )
        for seed in range(20):
            result = explainer.explain(frame.iloc[[i]], seeds=[seed])[0]
            by_feature = {a["feature"]: a for a in result["attributions"]}
            estimate = np.array([by_feature[n]["contribution"] for n in names])
            errors = np.array([by_feature[n]["std_error"] for n in names])
            covered += list(np.abs(estimate - exact) <= 1.96 * errors + 1e-12)
            assert result["evidence"]["additivity_error"] < 1e-9
    assert np.mean(covered) >= 0.90


def test_sampling_is_reproducible_by_seed(
    small_models: dict[str, LoadedModel], probe_rows: pd.DataFrame
) -> None:
    model = small_models["mlp"]
    frame = model.frame(probe_rows.iloc[:1].to_dict("records"))
    sampling = ShapOptions(algorithm="sampling")
    first = ShapExplainer(model, sampling).explain(frame, seeds=[7])
    again = ShapExplainer(model, sampling).explain(frame, seeds=[7])
    other = ShapExplainer(model, sampling).explain(frame, seeds=[8])
    assert first == again
    assert first != other


@pytest.fixture(scope="module")
def demo_store() -> ModelStore:
    store = ModelStore(ROOT / "models")
    store.scan()
    return store


def test_demo_logit_equals_coefficient_times_deviation_from_reference_mean(
    demo_store: ModelStore, applicants: list[dict[str, Any]]
) -> None:
    """phi_j = sum over j's encoded columns of coef * (x - reference mean), computed here from
    the pipeline's own feature names, independently of the service's column mapping."""
    version = demo_store.get("german-credit-logit")
    pipeline = skops.io.load(
        version.file("model.skops"),
        trusted=skops.io.get_untrusted_types(file=version.file("model.skops")),
    )
    model = LoadedModel.load(version)
    encoder, logit = pipeline[:-1], pipeline[-1]
    columns = list(encoder.get_feature_names_out())
    reference_mean = encoder.transform(model.reference).mean(axis=0)
    frame = model.frame(applicants[:25])
    design = encoder.transform(frame)
    expected_terms = logit.coef_[0] * (design - reference_mean)
    results = ShapExplainer(model, ShapOptions()).explain(frame, seeds=[0] * len(frame))
    for i, result in enumerate(results):
        assert result["evidence"]["algorithm"] == "linear"
        for attribution in result["attributions"]:
            name = attribution["feature"]
            own = [
                c
                for c, col in enumerate(columns)
                if col == f"numeric__{name}" or col.startswith(f"categorical__{name}_")
            ]
            assert own, name
            assert attribution["contribution"] == pytest.approx(
                expected_terms[i, own].sum(), abs=1e-9
            )
        assert result["evidence"]["additivity_error"] < 1e-9


def test_demo_tree_shap_is_additive_on_every_applicant(
    demo_store: ModelStore, applicants: list[dict[str, Any]]
) -> None:
    model = LoadedModel.load(demo_store.get("german-credit"))
    frame = model.frame(applicants)
    results = ShapExplainer(model, ShapOptions()).explain(frame, seeds=[0] * len(frame))
    errors = [r["evidence"]["additivity_error"] for r in results]
    assert results[0]["evidence"]["algorithm"] == "tree"
    assert results[0]["reference"]["rows"] == 200
    assert max(errors) < 1e-6
    margins = model.predictor.margin(frame)
    np.testing.assert_allclose([r["evidence"]["model_output"] for r in results], margins)


def test_exact_enumeration_is_refused_for_many_features(demo_store: ModelStore) -> None:
    model = LoadedModel.load(demo_store.get("german-credit"))
    with pytest.raises(InvalidRequestError) as raised:
        ShapExplainer(model, ShapOptions(algorithm="exact"))
    issue = raised.value.issues[0]
    assert issue.loc == ("body", "options", "shap", "algorithm")
    assert "at most 12 features" in issue.msg and "20" in issue.msg


def test_every_step_down_is_said_and_the_background_named(demo_store: ModelStore) -> None:
    model = LoadedModel.load(demo_store.get("german-credit"))
    tree = ShapExplainer(model, ShapOptions())
    assert tree.summary() == {
        "algorithm": "tree",
        "fallback_reason": None,
        "self_check_error": tree.check.error if tree.check else None,
        "self_check_tolerance": tree.check.tolerance if tree.check else None,
        "background": {"rows": 200, "selection": "all 200 reference rows"},
    }
    assert tree.implementation == "native"
    assert 0 <= tree.summary()["self_check_error"] <= tree.summary()["self_check_tolerance"]
    assert tree.summary()["self_check_tolerance"] < 1e-9  # a float64 model
    sampled = ShapExplainer(model, ShapOptions(output="probability"))
    summary = sampled.summary()
    assert summary["algorithm"] == "sampling" and summary["self_check_error"] is None
    assert "at most 12 features; this model has 20" in summary["fallback_reason"]
    assert summary["background"]["rows"] == 50
    frame = model.frame([model.reference.iloc[0].to_dict()])
    result = sampled.explain(frame, seeds=[3])[0]
    assert result["evidence"]["fallback_reason"] == summary["fallback_reason"]
    assert result["reference"]["rows"] == 50
    assert result["reference"]["selection"].startswith("random sample of 50 of the 200")
    # asked for explicitly, sampling is no fallback
    assert ShapExplainer(model, ShapOptions(algorithm="sampling")).fallback_reason is None


@pytest.mark.parametrize("options", [{}, {"algorithm": "sampling", "permutations": 4}])
def test_each_result_row_is_its_engine_row_in_json_types_and_magnitude_order(
    demo_store: ModelStore, applicants: list[dict[str, Any]], options: dict[str, Any]
) -> None:
    model = LoadedModel.load(demo_store.get("german-credit"))
    frame = model.frame(applicants[:12])
    explainer = ShapExplainer(model, ShapOptions(**options))
    seeds = list(range(100, 112))
    results = explainer.explain(frame, seeds)
    names = [f.name for f in model.manifest.features]
    sampled = explainer.algorithm == "sampling"
    for i, result in enumerate(results):
        engine = explainer.engine
        part = engine.explain_row(frame.iloc[[i]], seeds[i]) if sampled else engine.explain(frame)
        k = 0 if sampled else i
        values = part.values[k]
        expected_order = sorted(range(len(names)), key=lambda j: (-abs(values[j]), j))
        assert [a["feature"] for a in result["attributions"]] == [names[j] for j in expected_order]
        for a, j in zip(result["attributions"], expected_order, strict=True):
            cell = frame.iloc[i, j]
            assert type(a["contribution"]) is float and a["contribution"] == values[j]
            if isinstance(cell, (float, np.floating)):
                assert type(a["value"]) is float and a["value"] == float(cell)
            elif isinstance(cell, np.integer):
                assert type(a["value"]) is int and a["value"] == int(cell)
            else:
                assert a["value"] == str(cell)
            if sampled:
                assert a["std_error"] == part.std_error[k][j]
            else:
                assert "std_error" not in a
        fx = result["evidence"]["model_output"]
        assert fx == float(model.predictor.output(frame.iloc[[i]], explainer.space)[0])
        assert result["evidence"]["additivity_error"] == abs(
            fx - part.base_value - float(np.sum(values))
        )
        assert result["evidence"].get("seed") == (seeds[i] if sampled else None)


def test_equal_magnitudes_keep_the_features_order(demo_store: ModelStore) -> None:
    model = LoadedModel.load(demo_store.get("german-credit"))
    explainer = ShapExplainer(model, ShapOptions())
    names = [f.name for f in model.manifest.features]
    values = np.zeros((1, len(names)))
    values[0, [3, 1, 7, 5]] = [0.25, -0.25, 0.5, 0.25]
    (result,) = explainer._format([[None]] * len(names), 0, Attributions(values, 0.0), [0.0], [0])
    shown = [a["feature"] for a in result["attributions"]]
    assert shown[:4] == [names[7], names[1], names[3], names[5]]
    assert shown[4:] == [n for j, n in enumerate(names) if j not in (1, 3, 5, 7)]
