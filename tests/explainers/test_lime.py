"""LIME: faithful to the model where the answer is known, readable, seeded, validated."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from service.errors import InvalidRequestError
from service.explainers.lime import LimeExplainer, LimeOptions, _surrogate
from service.registry.loaded import LoadedModel
from service.registry.manifest import FeatureType
from service.registry.store import ModelStore
from tests.conftest import ROOT
from tests.explainers.conftest import CATEGORICAL, COLOURS, NUMERIC, SIZES, manifest, synthetic

DEMO_MODELS = ["german-credit", "german-credit-logit"]
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


@pytest.fixture(scope="module")
def demo_store() -> ModelStore:
    store = ModelStore(ROOT / "models")
    store.scan()
    return store


@pytest.fixture(scope="module")
def demo_models(demo_store: ModelStore) -> dict[str, LoadedModel]:
    return {name: LoadedModel.load(demo_store.get(name)) for name in DEMO_MODELS}


def by_feature(result: dict[str, Any]) -> dict[str, float]:
    return {w["feature"]: w["weight"] for w in result["weights"]}


# --- faithfulness -----------------------------------------------------------------------


def standardised_effects(model: LoadedModel, row: pd.DataFrame) -> dict[str, float]:
    """What LIME's surrogate must find for a logistic model, from the pipeline's own
    coefficients: a numeric's log-odds slope times its reference standard deviation, and a
    categorical's coefficient at the instance's category minus the reference-frequency
    weighted mean coefficient of the other categories."""
    pipeline = model.predictor.model  # type: ignore[attr-defined]
    encoder, logistic = pipeline[:-1], pipeline[-1]
    coef = dict(zip(encoder.get_feature_names_out(), logistic.coef_[0], strict=True))
    scaler = encoder.named_steps["pre"].named_transformers_["num"]
    reference = model.reference
    effects = {}
    for k, name in enumerate(NUMERIC):
        effects[name] = coef[f"num__{name}"] / scaler.scale_[k] * reference[name].std(ddof=0)
    for name in CATEGORICAL:
        value = row[name].iloc[0]
        frequency = reference[name].value_counts(normalize=True)
        others = [c for c in frequency.index if c != value]
        other_mean = np.average(
            [coef[f"cat__{name}_{c}"] for c in others], weights=frequency[others].to_numpy()
        )
        effects[name] = coef[f"cat__{name}_{value}"] - other_mean
    return effects


def test_linear_model_recovers_signs_and_ranking_of_standardised_effects(
    small_models: dict[str, LoadedModel], probe_rows: pd.DataFrame
) -> None:
    model = small_models["logistic"]
    explainer = LimeExplainer(
        model, LimeOptions(output="log_odds", discretize=False, num_features=5)
    )
    frame = model.frame(probe_rows.to_dict("records"))
    results = explainer.explain(frame, seeds=list(range(len(frame))))
    for i, result in enumerate(results):
        expected = standardised_effects(model, frame.iloc[[i]])
        got = by_feature(result)
        assert set(got) == set(expected)
        for name, effect in expected.items():
            assert np.sign(got[name]) == np.sign(effect), (i, name)
            assert got[name] == pytest.approx(effect, abs=0.05 + 0.05 * abs(effect)), (i, name)
        # The ranking: every pair whose true magnitudes differ by more than 15% is ordered.
        for a in expected:
            for b in expected:
                if abs(expected[a]) > 1.15 * abs(expected[b]):
                    assert abs(got[a]) > abs(got[b]), (i, a, b)
        assert [w["feature"] for w in result["weights"]] == sorted(got, key=lambda n: -abs(got[n]))
        assert result["output_space"] == "log_odds"
        assert result["evidence"]["weighted_r2"] > 0.7
        assert result["model_prediction"] == pytest.approx(
            float(model.predictor.margin(frame.iloc[[i]])[0]), abs=1e-9
        )


def test_closed_form_surrogate_equals_sklearn_ridge_and_lime_forward_selection() -> None:
    """The fit is sklearn's Ridge(alpha=1) with sample weights, its R^2 sklearn's weighted
    score, and forward selection picks what a brute-force refit at each step picks."""
    rng = np.random.default_rng(3)
    z = (rng.random((800, 8)) < 0.6).astype(float)
    z[0] = 1.0
    y = z @ np.array([0.5, -0.3, 0.0, 0.2, 0.05, -0.6, 0.1, 0.0]) + rng.normal(0, 0.2, 800)
    weights = np.sqrt(np.exp(-np.sum((z - 1.0) ** 2, axis=1) / 2.0**2))
    fit = _surrogate(z, y, weights, 4, "forward_selection")
    chosen: list[int] = []
    for _ in range(4):
        scores = {}
        for j in set(range(8)) - set(chosen):
            columns = chosen + [j]
            ols = Ridge(alpha=0.0).fit(z[:, columns], y, sample_weight=weights)
            scores[j] = ols.score(z[:, columns], y, sample_weight=weights)
        chosen.append(max(scores, key=lambda j: (scores[j], -j)))
    assert fit.selected.tolist() == chosen
    ridge = Ridge(alpha=1.0).fit(z[:, chosen], y, sample_weight=weights)
    np.testing.assert_allclose(fit.coef, ridge.coef_, rtol=1e-9, atol=1e-12)
    assert fit.intercept == pytest.approx(ridge.intercept_, abs=1e-10)
    assert fit.weighted_r2 == pytest.approx(
        ridge.score(z[:, chosen], y, sample_weight=weights), abs=1e-10
    )
    assert fit.surrogate_prediction == pytest.approx(ridge.predict(z[:1, chosen])[0], abs=1e-10)

    flat = _surrogate(z, np.full(800, 0.3), weights, 4, "forward_selection")
    assert flat.weighted_r2 == 1.0 and np.abs(flat.coef).max() < 1e-12
    assert flat.surrogate_prediction == pytest.approx(0.3, abs=1e-12)

    top = _surrogate(z, y, weights, 3, "highest_weights")
    full = Ridge(alpha=0.01).fit(z, y, sample_weight=weights)
    assert top.selected.tolist() == np.argsort(-np.abs(full.coef_), kind="stable")[:3].tolist()


# --- the demo models --------------------------------------------------------------------


def instance_satisfies(condition: str, name: str, value: Any, feature: Any) -> bool:
    if feature.type is not FeatureType.numeric:
        prefix = f"{name} = "
        assert condition.startswith(prefix), condition
        category = condition[len(prefix) :]
        assert category in (feature.categories or []), condition
        return bool(category == value)
    if m := re.fullmatch(rf"{re.escape(name)} <= ({NUMBER})", condition):
        return bool(value <= float(m[1]))
    if m := re.fullmatch(rf"{re.escape(name)} > ({NUMBER})", condition):
        return bool(value > float(m[1]))
    m = re.fullmatch(rf"({NUMBER}) < {re.escape(name)} <= ({NUMBER})", condition)
    assert m, condition
    return bool(float(m[1]) < value <= float(m[2]))


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_demo_models_readable_conditions_and_reported_fit(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]], name: str
) -> None:
    model = demo_models[name]
    explainer = LimeExplainer(model, LimeOptions())
    assert explainer.model_evaluation == "design"  # the gathered design was proved exact
    frame = model.frame(applicants[:12])
    results = explainer.explain(frame, seeds=list(range(100, 112)))
    probability = model.predictor.probability(frame)
    n_features = len(model.manifest.features)
    for i, result in enumerate(results):
        evidence = result["evidence"]
        assert 0 < evidence["weighted_r2"] <= 1
        assert evidence["kernel_width"] == pytest.approx(0.75 * math.sqrt(n_features))
        assert evidence["samples"] == 5000 and evidence["seed"] == 100 + i
        assert evidence["stability"] is None
        assert result["output_space"] == "probability"
        assert result["model_prediction"] == pytest.approx(probability[i], abs=1e-12)
        weights = [w["weight"] for w in result["weights"]]
        assert len(weights) == 10 == len({w["feature"] for w in result["weights"]})
        assert [abs(w) for w in weights] == sorted((abs(w) for w in weights), reverse=True)
        # At the instance every condition holds: the surrogate is intercept + sum(weights).
        assert result["surrogate_prediction"] == pytest.approx(
            result["intercept"] + sum(weights), abs=1e-9
        )
        for item in result["weights"]:
            feature = model.manifest.feature(item["feature"])
            value = frame[feature.name].iloc[i]
            assert item["value"] == (float(value) if feature.type == "numeric" else value)
            assert instance_satisfies(item["condition"], feature.name, value, feature)
            if feature.type is FeatureType.numeric:
                quartiles = np.percentile(model.reference[feature.name], [25, 50, 75])
                for number in re.findall(NUMBER, item["condition"].replace(feature.name, "")):
                    assert np.isclose(float(number), quartiles).any(), item["condition"]


def test_gathered_design_equals_the_model_called_on_the_sample_frame(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    model = demo_models["german-credit"]
    frame = model.frame(applicants[20:23])
    fast = LimeExplainer(model, LimeOptions(samples=1000)).explain(frame, [5, 6, 7])
    plain_explainer = LimeExplainer(model, LimeOptions(samples=1000), gather_design=False)
    assert plain_explainer.model_evaluation == "frame"
    plain = plain_explainer.explain(frame, [5, 6, 7])
    for a, b in zip(fast, plain, strict=True):
        assert [w["feature"] for w in a["weights"]] == [w["feature"] for w in b["weights"]]
        np.testing.assert_allclose(
            [w["weight"] for w in a["weights"]], [w["weight"] for w in b["weights"]], atol=1e-9
        )
        assert a["evidence"]["weighted_r2"] == pytest.approx(b["evidence"]["weighted_r2"])


def test_same_seed_same_floats_other_seed_differs(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    model = demo_models["german-credit"]
    frame = model.frame(applicants[4:6])
    first = LimeExplainer(model, LimeOptions()).explain(frame, seeds=[7, 8])
    again = LimeExplainer(model, LimeOptions()).explain(frame, seeds=[7, 8])
    other = LimeExplainer(model, LimeOptions()).explain(frame, seeds=[9, 10])
    assert first == again
    for a, b in zip(first, other, strict=True):
        assert a != b
        assert a["evidence"]["weighted_r2"] != b["evidence"]["weighted_r2"]
    # A row's explanation depends on its own seed only, not on its neighbours in the batch.
    alone = LimeExplainer(model, LimeOptions()).explain(frame.iloc[[1]], seeds=[8])
    assert alone[0] == first[1]


def test_stability_reports_jaccard_of_reseeded_runs(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    model = demo_models["german-credit-logit"]
    frame = model.frame(applicants[4:6])
    options = {"samples": 1000, "num_features": 5}
    plain = LimeExplainer(model, LimeOptions(**options)).explain(frame, seeds=[1, 2])
    stable = LimeExplainer(model, LimeOptions(**options, stability=4)).explain(frame, [1, 2])
    for a, b in zip(plain, stable, strict=True):
        stability = b["evidence"]["stability"]
        assert stability["runs"] == 4
        assert 0.0 <= stability["mean_jaccard"] <= 1.0
        # The reported explanation is the first run, the same as without stability.
        assert b["weights"] == a["weights"]
    every = LimeExplainer(model, LimeOptions(samples=500, num_features=50, stability=2))
    assert every.explain(frame.iloc[:1], [3])[0]["evidence"]["stability"]["mean_jaccard"] == 1.0


# --- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("samples", -5),
        ("samples", 99),
        ("samples", 100_001),
        ("samples", "many"),
        ("num_features", 0),
        ("num_features", 51),
        ("kernel_width", 0),
        ("kernel_width", -1.0),
        ("kernel_width", float("nan")),
        ("discretize", "sometimes"),
        ("output", "margin"),
        ("stability", 1),
        ("stability", 0),
        ("stability", 21),
        ("colour", 1),
    ],
)
def test_invalid_options_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        LimeOptions.model_validate({field: value})
    assert [error["loc"] for error in raised.value.errors()] == [(field,)]


def test_default_options() -> None:
    options = LimeOptions()
    assert (options.samples, options.num_features, options.kernel_width) == (5000, 10, None)
    assert (options.discretize, options.output, options.stability) == (True, "auto", None)


def register(
    root: Path, name: str, pipeline: Pipeline, reference: pd.DataFrame, **manifest_fields: Any
) -> LoadedModel:
    spec = {**manifest(name), **manifest_fields}
    for key in [k for k, v in spec.items() if v is None]:
        del spec[key]
    files = {
        "model.skops": skops.io.dumps(pipeline),
        "reference.csv": reference.to_csv(index=False).encode(),
    }
    version, _ = ModelStore(root).register(yaml.safe_dump(spec).encode(), files, "cli")
    return LoadedModel.load(version)


def onehot_pipeline(estimator: Any, scaler: Any) -> Pipeline:
    encoder = ColumnTransformer(
        [
            ("cat", OneHotEncoder(categories=[COLOURS, SIZES]), CATEGORICAL),
            ("num", scaler, NUMERIC),
        ],
        sparse_threshold=0.0,
    )
    return Pipeline([("pre", encoder), ("model", estimator)])


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    train = synthetic(300, seed=5)
    target = (
        3.0 * train["income"]
        - 2.0 * train["debt"]
        + train["size"].map(dict(zip(SIZES, [0.0, 5.0, 10.0, 20.0], strict=True)))
    )
    pipeline = onehot_pipeline(Ridge(alpha=1e-6), StandardScaler())
    pipeline.fit(train[NUMERIC + CATEGORICAL], target)
    root = tmp_path_factory.mktemp("regression") / "models"
    fields = {"task": "regression", "target": None, "classes": None, "favourable_class": None}
    return register(root, "amount", pipeline, train.iloc[:50], **fields)


def test_instances_encoded_without_the_preprocessor_only_where_proved(
    small_models: dict[str, LoadedModel],
    probe_rows: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Instances are encoded from per-feature tables and affine maps, which must equal the
    model's preprocessor; a clipping scaler is not affine, so there it is called instead,
    and the explanation is the same either way."""
    model = small_models["logistic"]
    explainer = LimeExplainer(model, LimeOptions(samples=500))
    assert explainer._design is not None and explainer._design.encodings is not None
    far = probe_rows.assign(income=[-500.0, 900.0, 50.0, 0.0, 1e5])  # beyond the reference
    frame = model.frame(far.to_dict("records"))
    codes, _ = explainer._representation(frame)
    np.testing.assert_allclose(
        explainer._design.instance_designs(frame, codes),
        model.predictor.design(frame),
        rtol=1e-12,
        atol=1e-12,
    )

    train = synthetic(400, seed=2)
    clipped = onehot_pipeline(LogisticRegression(max_iter=2000), MinMaxScaler(clip=True))
    clipped.fit(train[NUMERIC + CATEGORICAL], train["outcome"])
    root = tmp_path_factory.mktemp("clipped") / "models"
    model = register(root, "clipped", clipped, train.iloc[:40])
    explainer = LimeExplainer(model, LimeOptions(samples=500))
    assert explainer.model_evaluation == "design"
    assert explainer._design is not None and explainer._design.encodings is None
    frame = model.frame(far.to_dict("records"))
    fast = explainer.explain(frame, seeds=[1, 2, 3, 4, 5])
    plain = LimeExplainer(model, LimeOptions(samples=500), gather_design=False).explain(
        frame, seeds=[1, 2, 3, 4, 5]
    )
    for a, b in zip(fast, plain, strict=True):
        assert a["model_prediction"] == pytest.approx(b["model_prediction"], abs=1e-12)
        np.testing.assert_allclose(
            [w["weight"] for w in a["weights"]], [w["weight"] for w in b["weights"]], atol=1e-9
        )


def test_regression_explains_raw_output_and_refuses_probability(
    regression_model: LoadedModel, probe_rows: pd.DataFrame
) -> None:
    frame = regression_model.frame(probe_rows.iloc[:2].to_dict("records"))
    explainer = LimeExplainer(regression_model, LimeOptions(discretize=False, num_features=5))
    results = explainer.explain(frame, seeds=[0, 1])
    reference_sd = regression_model.reference["income"].std(ddof=0)
    for i, result in enumerate(results):
        assert result["output_space"] == "raw"
        assert result["evidence"]["weighted_r2"] > 0.9
        assert result["model_prediction"] == pytest.approx(
            float(regression_model.predictor.margin(frame.iloc[[i]])[0]), abs=1e-9
        )
        assert by_feature(result)["income"] == pytest.approx(3.0 * reference_sd, rel=0.05)
    with pytest.raises(InvalidRequestError) as raised:
        LimeExplainer(regression_model, LimeOptions(output="probability"))
    assert raised.value.issues[0].loc == ("body", "options", "lime", "output")


# --- against the reference implementation ----------------------------------------------


def test_agrees_with_the_lime_package(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    lime_tabular = pytest.importorskip("lime.lime_tabular")
    model = demo_models["german-credit-logit"]
    features = model.manifest.features
    categorical = [j for j, f in enumerate(features) if f.type is not FeatureType.numeric]

    def encode(frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for feature in features:
            if feature.type is FeatureType.numeric:
                columns.append(frame[feature.name].to_numpy(dtype=float))
            else:
                index = {c: k for k, c in enumerate(feature.categories or [])}
                columns.append(np.array([index[v] for v in frame[feature.name]], dtype=float))
        return np.column_stack(columns)

    def predict(data: np.ndarray) -> np.ndarray:
        columns = {
            f.name: (
                np.asarray(f.categories, dtype=object)[data[:, j].astype(int)]
                if j in categorical
                else data[:, j]
            )
            for j, f in enumerate(features)
        }
        p = model.predictor.probability(pd.DataFrame(columns))
        return np.column_stack([1 - p, p])

    reference = lime_tabular.LimeTabularExplainer(
        encode(model.reference),
        feature_names=model.manifest.feature_names,
        categorical_features=categorical,
        discretize_continuous=True,
        random_state=0,
    )
    frame = model.frame(applicants[:6])
    ours = LimeExplainer(model, LimeOptions()).explain(frame, seeds=list(range(6)))
    overlaps, r2 = [], []
    for i, row in enumerate(encode(frame)):
        theirs = reference.explain_instance(row, predict, labels=(1,), num_samples=5000)
        their_features = {model.manifest.feature_names[j] for j, _ in theirs.local_exp[1]}
        our_features = set(by_feature(ours[i]))
        overlaps.append(len(our_features & their_features) / len(our_features | their_features))
        r2.append((ours[i]["evidence"]["weighted_r2"], theirs.score))
    assert np.mean(overlaps) >= 0.6
    ours_r2, their_r2 = np.mean(r2, axis=0)
    assert abs(ours_r2 - their_r2) < 0.1
