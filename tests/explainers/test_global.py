"""Global methods against direct computation: scikit-learn's permutation importance and
partial dependence on the bare pipeline, ALE on a model whose effects are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import partial_dependence
from sklearn.inspection import permutation_importance as sklearn_permutation_importance

from service.explainers.global_ import run_global
from service.explainers.global_.ale import ale
from service.explainers.global_.associations import cramers_v, strong_associations
from service.explainers.global_.data import GlobalData, labelled, unlabelled
from service.explainers.global_.options import PermutationOptions
from service.explainers.global_.pdp import dependence, grid
from service.explainers.global_.permutation import permutation_importance
from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore
from tests.conftest import ROOT
from tests.explainers.conftest import manifest as small_manifest

DEMO = ["german-credit", "german-credit-logit"]


@pytest.fixture(scope="module")
def demo() -> dict[str, LoadedModel]:
    store = ModelStore(ROOT / "models")
    store.scan()
    return {name: LoadedModel.load(store.get(name)) for name in DEMO}


def shap_factory(model: LoadedModel):  # noqa: ANN201
    return lambda options: ShapExplainer(model, ShapOptions(**options))


@pytest.mark.parametrize("name", DEMO)
def test_permutation_importance_equals_sklearn_with_the_same_seed(
    demo: dict[str, LoadedModel], name: str
) -> None:
    model = demo[name]
    data = labelled(model, None)
    assert data.info() == {"rows": 300, "source": "evaluation set: 30% stratified hold-out"}
    ours = permutation_importance(model, data, PermutationOptions(n_repeats=3), seed=11)

    classes = np.where(data.labels == 1, "good", "bad")
    theirs = sklearn_permutation_importance(
        model.predictor.model, data.frame, classes, scoring="roc_auc", n_repeats=3, random_state=11
    )

    assert ours["metric"] == "roc_auc" and ours["n_repeats"] == 3
    by_name = {f["feature"]: f for f in ours["features"]}
    for j, feature in enumerate(model.manifest.feature_names):
        assert by_name[feature]["mean"] == pytest.approx(theirs.importances_mean[j], abs=1e-9)
        assert by_name[feature]["std"] == pytest.approx(theirs.importances_std[j], abs=1e-9)
    assert ours["features"][0]["feature"] == "status_of_existing_checking_account"
    assert ours["features"][0]["mean"] > 0.05
    assert ours["baseline_score"] == pytest.approx(
        model.manifest.metrics.get("roc_auc", ours["baseline_score"]), abs=1e-3
    )


@pytest.mark.parametrize("name", DEMO)
@pytest.mark.parametrize(
    "feature", ["duration_in_month", "credit_amount", "age_in_years", "housing", "purpose"]
)
def test_partial_dependence_equals_sklearn_brute(
    demo: dict[str, LoadedModel], name: str, feature: str
) -> None:
    model = demo[name]
    data = unlabelled(model, None)
    spec = model.manifest.feature(feature)
    ours = dependence(
        lambda frame: model.predictor.output(frame, "probability"), data, [spec], 10, True
    )[0]

    categorical = spec.type.value != "numeric"
    theirs = partial_dependence(
        model.predictor.model,
        data.frame,
        [feature],
        categorical_features=[feature] if categorical else None,
        custom_values={feature: np.asarray(ours["grid"], dtype=object if categorical else float)},
        kind="both",
        method="brute",
        response_method="predict_proba",
    )

    np.testing.assert_allclose(ours["average"], theirs["average"][0], atol=1e-12)
    np.testing.assert_allclose(ours["curves"], theirs["individual"][0], atol=1e-12)
    if categorical:
        assert ours["grid"] == spec.categories
    else:
        values = data.frame[feature].to_numpy()
        expected = np.unique(np.quantile(values, np.linspace(0.05, 0.95, 10)))
        assert ours["grid"] == pytest.approx(list(expected))


def test_ale_recovers_a_known_additive_effect() -> None:
    """f = sin(x1) + x2^2 with x2 correlated to x1: ALE of x1 is sin, of x2 the square,
    each centred; exactly so at the bin edges up to the centring's discretisation."""
    rng = np.random.default_rng(3)
    x1 = rng.uniform(-3, 3, 4000)
    x2 = 0.6 * x1 + rng.normal(0, 0.8, 4000)
    frame = pd.DataFrame({"x1": x1, "x2": x2})

    def model(rows: pd.DataFrame) -> np.ndarray:
        return np.sin(rows["x1"].to_numpy()) + rows["x2"].to_numpy() ** 2

    for feature, effect in (("x1", np.sin), ("x2", np.square)):
        curve = ale(model, frame, feature, bins=40)
        edges, values = np.array(curve["edges"]), np.array(curve["values"])
        assert len(edges) == 41 and sum(curve["counts"]) == 4000
        truth = effect(edges) - effect(frame[feature].to_numpy()).mean()
        error = np.abs(values - truth).max()
        spread = truth.max() - truth.min()
        assert error < 0.01 * spread, (feature, error, spread)
        # the shape itself is exact: differences between edges equal the true effect's
        np.testing.assert_allclose(np.diff(values), np.diff(effect(edges)), atol=1e-12)


def test_ale_of_a_constant_feature_is_flat() -> None:
    frame = pd.DataFrame({"x": np.full(10, 2.0), "y": np.arange(10.0)})
    curve = ale(lambda rows: rows["x"].to_numpy() * rows["y"].to_numpy(), frame, "x", 5)
    assert curve == {"feature": "x", "edges": [2.0], "values": [0.0], "counts": []}


def test_shap_importance_is_mean_absolute_shap_and_adds_up(
    demo: dict[str, LoadedModel],
) -> None:
    model = demo["german-credit"]
    document = run_global(model, ["shap_importance"], {}, [], None, 5, shap_factory(model))
    section = document["shap_importance"]
    assert section["algorithm"] == "tree" and section["output_space"] == "log_odds"
    assert section["data"]["rows"] == 200 and section["max_additivity_error"] < 1e-6
    explainer = ShapExplainer(model, ShapOptions())
    direct = explainer.explain(model.reference, [0] * 200)
    for entry in section["features"][:5]:
        contributions = [
            next(a["contribution"] for a in row["attributions"] if a["feature"] == entry["feature"])
            for row in direct
        ]
        assert entry["mean_abs"] == pytest.approx(np.abs(contributions).mean(), rel=1e-12)
        assert entry["shap"] == pytest.approx(contributions, rel=1e-12)
        assert len(entry["values"]) == 200
    means = sum(entry["mean"] for entry in section["features"])
    outputs = model.predictor.output(model.reference, "log_odds").mean()
    assert section["base_value"] + means == pytest.approx(outputs, abs=1e-6)
    ranked = [e["mean_abs"] for e in section["features"]]
    assert ranked == sorted(ranked, reverse=True)


def test_strong_associations_name_the_pair_and_coefficient() -> None:
    from service.registry.manifest import Manifest

    rng = np.random.default_rng(0)
    n = 400
    income = rng.normal(50, 15, n)
    colours = rng.choice(["red", "green", "blue"], n)
    frame = pd.DataFrame(
        {
            "income": income,
            "debt": 0.5 * income + rng.normal(0, 1, n),
            "years": rng.integers(0, 30, n).astype(float),
            "colour": colours,
            "size": rng.choice(["small", "medium", "large", "huge"], n),
        }
    )
    manifest = Manifest.model_validate(small_manifest("assoc"))
    warnings = strong_associations(frame, manifest, 0.7)
    assert [w["features"] for w in warnings] == [["income", "debt"]]
    assert warnings[0]["measure"] == "spearman" and warnings[0]["coefficient"] > 0.95
    assert "income and debt" in warnings[0]["message"]
    assert cramers_v(frame["colour"], frame["colour"].copy()) == pytest.approx(1.0, abs=0.01)
    assert cramers_v(frame["colour"], frame["size"]) < 0.1


def test_the_demo_data_warns_of_duration_and_amount_at_a_lower_threshold(
    demo: dict[str, LoadedModel],
) -> None:
    model = demo["german-credit"]
    data = labelled(model, None)
    options = PermutationOptions(n_repeats=1, correlation_threshold=0.5)
    found = permutation_importance(model, data, options, seed=0)["warnings"]
    pairs = {tuple(w["features"]): w for w in found}
    assert ("duration_in_month", "credit_amount") in pairs
    assert 0.5 <= pairs[("duration_in_month", "credit_amount")]["coefficient"] < 0.9
    strict = permutation_importance(model, data, PermutationOptions(n_repeats=1), seed=0)
    assert all(w["coefficient"] >= 0.7 for w in strict["warnings"])


def test_a_global_document_is_seeded_and_states_its_data(demo: dict[str, LoadedModel]) -> None:
    model = demo["german-credit-logit"]
    methods = ["permutation_importance", "pdp", "ice", "ale"]
    options = {
        "permutation_importance": {"n_repeats": 2, "max_rows": 120},
        "pdp": {"features": ["housing"], "max_rows": 60},
        "ice": {"features": ["duration_in_month"], "max_rows": 7},
        "ale": {"features": ["credit_amount"], "bins": 5},
    }
    first = run_global(model, methods, options, [], None, 99, shap_factory(model))
    again = run_global(model, methods, options, [], None, 99, shap_factory(model))
    other = run_global(model, methods, options, [], None, 100, shap_factory(model))
    assert first == again and first != other
    assert first["permutation_importance"]["data"]["rows"] == 120
    assert "evaluation set" in first["permutation_importance"]["data"]["source"]
    assert first["pdp"]["data"]["rows"] == 60
    assert first["pdp"]["features"][0]["grid"] == ["rent", "own", "for free"]
    ice = first["ice"]["features"][0]
    assert len(ice["curves"]) == 7 and first["ice"]["output_space"] == "probability"
    assert len(first["ale"]["features"][0]["edges"]) == 6


def test_supplied_rows_and_labels_are_used(demo: dict[str, LoadedModel]) -> None:
    model = demo["german-credit"]
    reference = labelled(model, None)
    rows = reference.frame.iloc[:80].to_dict("records")
    labels = ["good" if v == 1 else "bad" for v in reference.labels[:80]]
    document = run_global(
        model,
        ["permutation_importance", "ale"],
        {"permutation_importance": {"n_repeats": 2}},
        rows,
        labels,
        1,
        shap_factory(model),
    )
    assert document["permutation_importance"]["data"] == {"rows": 80, "source": "request rows"}
    assert document["ale"]["data"] == {"rows": 80, "source": "request rows"}
    direct = GlobalData(
        reference.frame.iloc[:80].reset_index(drop=True), reference.labels[:80], "x"
    )
    expected = permutation_importance(model, direct, PermutationOptions(n_repeats=2), 1)
    assert document["permutation_importance"]["features"] == expected["features"]


def test_numeric_grid_uses_distinct_values_when_few(demo: dict[str, LoadedModel]) -> None:
    model = demo["german-credit"]
    feature = model.manifest.feature("installment_rate_in_percentage_of_disposable_income")
    assert grid(model.reference[feature.name], feature, 20) == [1.0, 2.0, 3.0, 4.0]


def test_sampled_global_shap_says_why_and_names_its_background(
    demo: dict[str, LoadedModel],
) -> None:
    """Probability output of the 20-feature tree model: TreeSHAP does not apply and
    enumeration is out of reach, so it is sampled, and the section says so."""
    model = demo["german-credit"]
    options = {"shap_importance": {"output": "probability", "max_rows": 4}}
    document = run_global(model, ["shap_importance"], options, [], None, 5, shap_factory(model))
    section = document["shap_importance"]
    assert section["algorithm"] == "sampling"
    assert "log_odds output, not to probability" in section["fallback_reason"]
    assert "at most 12 features" in section["fallback_reason"]
    assert section["background"] == {
        "rows": 50,
        "selection": "random sample of 50 of the 200 reference rows (seed 0)",
    }
