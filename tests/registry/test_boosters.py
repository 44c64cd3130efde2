"""XGBoost (JSON, UBJ) and LightGBM (text) boosters registered through the real CLI:
loading, predictions against the booster's own, and exact interventional TreeSHAP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from service.errors import InvalidRequestError
from service.explainers.shap import ShapExplainer, ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.predictors import LightGBMPredictor, XGBoostPredictor
from service.registry.schema import validate_instances
from service.registry.store import ModelStore
from service.registry.validation import validate_candidate

from .toy import (
    REFERENCE_ROWS,
    Candidate,
    brute_force_shapley,
    candidate_hash,
    cli_register,
    finish,
    lightgbm_candidate,
    parse_cli,
    synthetic_data,
    xgboost_candidate,
    xgboost_native_candidate,
)

ROWS = [100, 151, 202, 299]  # outside the reference rows
EXTREMES = [
    {"income": 1000, "debt_ratio": 0.0, "housing": "free"},
    {"income": 0, "debt_ratio": 10.0, "housing": "own"},
]

# kind -> (builder, favourable class scored with sign +1)
KINDS: dict[str, Any] = {
    "xgb-json": lambda d: xgboost_candidate(d, "toy-xgb-json", fmt="xgboost-json"),
    "xgb-ubj": lambda d: xgboost_candidate(d, "toy-xgb-ubj", fmt="xgboost-ubj"),
    "lgb-text": lambda d: lightgbm_candidate(d, "toy-lgb-text"),
    "xgb-regression": lambda d: xgboost_candidate(d, "toy-xgb-reg", regression=True),
    "lgb-regression": lambda d: lightgbm_candidate(d, "toy-lgb-reg", regression=True),
    # favourable class first: the booster scores classes[1] = "bad", the service flips it
    "xgb-favourable-first": lambda d: xgboost_candidate(d, "toy-xgb-flip", classes=("good", "bad")),
}
CLASSIFIERS = ["xgb-json", "xgb-ubj", "lgb-text", "xgb-favourable-first"]


class Registered:
    def __init__(self, candidate: Candidate, code: int, out: str, err: str, root: Path) -> None:
        self.candidate, self.code, self.out, self.err, self.root = candidate, code, out, err, root

    @property
    def sign(self) -> float:
        manifest = self.candidate.manifest
        classes = manifest.get("classes")
        return -1.0 if classes and classes[0] == manifest["favourable_class"] else 1.0

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Ground truth: the booster's own raw score, for the favourable class."""
        return self.sign * self.candidate.raw_margin(frame)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Registered]]:
    """Every kind written and registered by concurrent ``xai-service register`` processes."""
    base = tmp_path_factory.mktemp("boosters")
    models = base / "models"
    data = synthetic_data()
    candidates = {kind: build(base / kind) for kind, build in KINDS.items()}
    assert all(c.data.equals(data) for c in candidates.values())
    processes = {kind: cli_register(c, models) for kind, c in candidates.items()}
    results = {kind: finish(p) for kind, p in processes.items()}
    return models, {
        kind: Registered(candidates[kind], *results[kind], models) for kind in candidates
    }


@pytest.fixture(scope="module")
def store(registry: tuple[Path, dict[str, Registered]]) -> ModelStore:
    store = ModelStore(registry[0])
    store.scan()
    return store


def _loaded(store: ModelStore, reg: Registered) -> LoadedModel:
    return LoadedModel.load(store.get(reg.candidate.name))


def _frame(model: LoadedModel, instances: list[dict[str, Any]]) -> pd.DataFrame:
    return model.frame(validate_instances(model.manifest, instances))


def _instances(reg: Registered) -> list[dict[str, Any]]:
    return reg.candidate.instances(ROWS) + EXTREMES


@pytest.mark.parametrize("kind", list(KINDS))
def test_cli_registers_with_the_content_hash_as_version(
    kind: str, registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    reg = registry[1][kind]
    assert reg.code == 0, reg.err
    name, version_id, state, described = parse_cli(reg.out)
    assert (name, state) == (reg.candidate.name, "registered")
    assert version_id == candidate_hash(reg.candidate)[:16]
    version = store.get(name)
    assert version.version_id == version_id
    assert version.content_hash == candidate_hash(reg.candidate)
    assert version.source == "cli"
    assert sorted(p.name for p in version.path.iterdir()) == sorted(
        ["manifest.yaml", "registration.json", *(p.name for p in reg.candidate.files())]
    )
    # the registration report: rows read, and the AUC of the booster's own scores
    assert [(d["role"], d["rows"], d["labelled"]) for d in described["data"]] == [
        ("reference", REFERENCE_ROWS, True),
        ("evaluation", 80, True),
    ]
    evaluation = reg.candidate.data.iloc[-80:]
    performance = described["evaluation"]
    assert (performance["file"], performance["rows"]) == ("evaluation.csv", 80)
    if kind in CLASSIFIERS:
        favourable = (evaluation["outcome"] == "good").to_numpy(dtype=int)
        expected = roc_auc_score(favourable, reg.margin(evaluation))
        assert performance["roc_auc"] == pytest.approx(expected, abs=1e-9)
        assert 0.7 < expected <= 1.0
        assert performance["base_rate"] == pytest.approx(favourable.mean())
        assert described["orientation"]["checked_on"] == "evaluation.csv"
        assert set(described["shap"]) == {"log_odds", "probability"}
    else:
        amount = evaluation["amount"].to_numpy()
        residual = amount - reg.margin(evaluation)
        expected_r2 = 1 - np.sum(residual**2) / np.sum((amount - amount.mean()) ** 2)
        assert performance["r2"] == pytest.approx(expected_r2, abs=1e-9)
        assert performance["rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)), abs=1e-9)
        assert performance["roc_auc"] is None and described["orientation"] is None
        assert set(described["shap"]) == {"raw"}


def test_registering_the_same_files_again_is_idempotent(
    registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    models, regs = registry
    reg = regs["xgb-json"]
    registered_at = store.get(reg.candidate.name).registered_at
    code, out, err = finish(cli_register(reg.candidate, models))
    assert code == 0, err
    name, version_id, state, _ = parse_cli(out)
    assert (name, version_id) == (reg.candidate.name, candidate_hash(reg.candidate)[:16])
    assert state == "already registered"
    again = ModelStore(models)
    again.scan()
    assert [v.version_id for v in again.versions(name)] == [version_id]
    assert again.get(name).registered_at == registered_at


@pytest.mark.parametrize("kind", list(KINDS))
def test_loaded_predictions_equal_the_boosters_own(
    kind: str, registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    reg = registry[1][kind]
    model = _loaded(store, reg)
    expected_type = LightGBMPredictor if kind.startswith("lgb") else XGBoostPredictor
    assert type(model.predictor) is expected_type
    frame = _frame(model, _instances(reg))
    raw = reg.candidate.raw_margin(frame)
    np.testing.assert_allclose(model.predictor.margin(frame), reg.sign * raw, rtol=0, atol=1e-12)
    predictions = model.predictions(frame)
    if kind in CLASSIFIERS:
        own = reg.candidate.raw_probability(frame)  # P(classes[1]) by the booster itself
        favourable = own if reg.sign > 0 else 1 - own
        got = np.array([p["probability"] for p in predictions])
        np.testing.assert_allclose(got, favourable, rtol=0, atol=1e-6)
        labels = ["good" if p >= 0.5 else "bad" for p in got]
        assert [p["label"] for p in predictions] == labels
        for p in predictions:
            assert p["probabilities"]["good"] + p["probabilities"]["bad"] == pytest.approx(1)
        assert len(set(labels)) == 2, "the chosen rows should get both decisions"
    else:
        assert [p["value"] for p in predictions] == pytest.approx(list(raw), abs=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_tree_shap_is_exact_and_matches_brute_force_shapley(
    kind: str, registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    reg = registry[1][kind]
    model = _loaded(store, reg)
    explainer = ShapExplainer(model, ShapOptions())
    assert explainer.algorithm == "tree"
    frame = _frame(model, _instances(reg))
    results = explainer.explain(frame, seeds=[0] * len(frame))
    space = "raw" if "regression" in kind else "log_odds"
    background = model.reference
    assert len(background) == REFERENCE_ROWS
    names = model.manifest.feature_names
    for i, result in enumerate(results):
        assert result["output_space"] == space
        assert result["reference"]["rows"] == REFERENCE_ROWS
        evidence = result["evidence"]
        assert evidence["algorithm"] == "tree"
        assert evidence["additivity_error"] < 1e-6
        base, phi = brute_force_shapley(reg.margin, background, frame.iloc[i])
        assert result["base_value"] == pytest.approx(base, abs=1e-6)
        assert evidence["model_output"] == pytest.approx(reg.margin(frame.iloc[[i]])[0], abs=1e-6)
        got = {a["feature"]: a["contribution"] for a in result["attributions"]}
        assert set(got) == set(names)
        np.testing.assert_allclose([got[n] for n in names], phi, rtol=0, atol=1e-6)
        # attributions are ordered by magnitude
        magnitudes = [abs(a["contribution"]) for a in result["attributions"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
    # and the values are not trivially zero
    assert max(abs(a["contribution"]) for r in results for a in r["attributions"]) > 0.1


def test_probability_output_is_enumerated_exactly_and_tree_is_refused(
    registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    """A booster's probability is not a sum of tree outputs: TreeSHAP does not apply, and
    with 3 features the service enumerates every coalition instead of sampling."""
    model = _loaded(store, registry[1]["xgb-json"])
    explainer = ShapExplainer(model, ShapOptions(output="probability"))
    assert explainer.algorithm == "exact" and explainer.fallback_reason is None
    frame = _frame(model, _instances(registry[1]["xgb-json"])[:2])
    for i, result in enumerate(explainer.explain(frame, seeds=[0, 0])):
        base, phi = brute_force_shapley(
            lambda f: model.predictor.probability(f), model.reference, frame.iloc[i]
        )
        got = {a["feature"]: a["contribution"] for a in result["attributions"]}
        # enumerated over the trees in float64; the booster's own probabilities are float32
        np.testing.assert_allclose([got[n] for n in model.manifest.feature_names], phi, atol=1e-6)
        assert result["base_value"] == pytest.approx(base, abs=1e-6)
    with pytest.raises(InvalidRequestError) as caught:
        ShapExplainer(model, ShapOptions(output="probability", algorithm="tree"))
    assert caught.value.issues[0].loc == ("body", "options", "shap", "algorithm")
    assert "probability space" in caught.value.issues[0].msg


def test_regression_rejects_a_probability_output(
    registry: tuple[Path, dict[str, Registered]], store: ModelStore
) -> None:
    model = _loaded(store, registry[1]["xgb-regression"])
    with pytest.raises(InvalidRequestError) as caught:
        ShapExplainer(model, ShapOptions(output="probability"))
    assert caught.value.issues[0].loc == ("body", "options", "shap", "output")


# --- native categorical splits (booster trained with the category as a categorical)


def _native_xgboost(folder: Path) -> tuple[Candidate, LoadedModel]:
    candidate = xgboost_native_candidate(folder, "toy-xgb-native")
    return candidate, _register_in_process(candidate, folder.parent / "models")


def _register_in_process(candidate: Candidate, models: Path) -> LoadedModel:
    """What the CLI does, in this process: validate, then store."""
    validate_candidate(candidate.folder, "cli")
    files = {p.name: p.read_bytes() for p in candidate.files()}
    version, created = ModelStore(models).register(
        candidate.manifest_path.read_bytes(), files, "cli"
    )
    assert created
    return LoadedModel.load(version)


def test_xgboost_native_categorical_splits_are_explained_exactly(tmp_path: Path) -> None:
    """shap 0.51 refuses interventional TreeSHAP on XGBoost categorical splits; the native
    engine reads them and its values equal brute-force Shapley values."""
    candidate, model = _native_xgboost(tmp_path / "native")
    frame = _frame(model, candidate.instances(ROWS))
    np.testing.assert_allclose(
        model.predictor.margin(frame), candidate.raw_margin(frame), rtol=0, atol=1e-12
    )
    explainer = ShapExplainer(model, ShapOptions())
    assert (explainer.algorithm, explainer.implementation) == ("tree", "native")
    assert explainer.fallback_reason is None
    names = model.manifest.feature_names
    for i, result in enumerate(explainer.explain(frame, seeds=[0] * len(frame))):
        base, phi = brute_force_shapley(candidate.raw_margin, model.reference, frame.iloc[i])
        got = {a["feature"]: a["contribution"] for a in result["attributions"]}
        np.testing.assert_allclose([got[n] for n in names], phi, rtol=0, atol=2e-5)
        assert result["evidence"]["additivity_error"] < 2e-5
    assert ShapExplainer(model, ShapOptions(algorithm="tree")).implementation == "native"


def test_lightgbm_native_categorical_splits_are_explained_exactly(tmp_path: Path) -> None:
    """shap 0.51 encodes a LightGBM categorical split on category c as 2**(c-1), so its
    interventional TreeSHAP values are silently wrong (additivity error ~0.1 here). The
    native engine reads the splits and equals brute-force Shapley values."""
    candidate = lightgbm_candidate(tmp_path / "native", "toy-lgb-native", categorical=True)
    dump = candidate.model.dump_model()

    def decision_types(node: dict[str, Any]) -> list[str]:
        if "split_index" not in node:
            return []
        return [
            node["decision_type"],
            *decision_types(node["left_child"]),
            *decision_types(node["right_child"]),
        ]

    kinds = {k for tree in dump["tree_info"] for k in decision_types(tree["tree_structure"])}
    assert "==" in kinds, "the booster should use categorical splits"
    model = _register_in_process(candidate, tmp_path / "models")
    frame = _frame(model, candidate.instances(ROWS))
    np.testing.assert_allclose(
        model.predictor.margin(frame), candidate.raw_margin(frame), rtol=0, atol=1e-12
    )
    # shap's own values for this booster really are wrong (the reason for the fallback)
    import shap

    design = model.predictor.design(model.reference)
    raw = shap.TreeExplainer(
        candidate.model,
        data=shap.maskers.Independent(design, max_samples=len(design)),
        feature_perturbation="interventional",
        model_output="raw",
    )
    values = raw.shap_values(design[:5], check_additivity=False)
    shap_error = np.abs(
        values.sum(axis=1) + raw.expected_value - candidate.raw_margin(model.reference[:5])
    )
    assert shap_error.max() > 1e-3

    explainer = ShapExplainer(model, ShapOptions())
    assert (explainer.algorithm, explainer.implementation) == ("tree", "native")
    results = explainer.explain(frame, seeds=list(range(len(frame))))
    names = model.manifest.feature_names
    for i, result in enumerate(results):
        evidence = result["evidence"]
        assert evidence["algorithm"] == "tree" and "fallback_reason" not in evidence
        assert evidence["additivity_error"] < 1e-9
        base, phi = brute_force_shapley(candidate.raw_margin, model.reference, frame.iloc[i])
        got = {a["feature"]: a["contribution"] for a in result["attributions"]}
        np.testing.assert_allclose([got[n] for n in names], phi, rtol=0, atol=1e-9)
        assert result["base_value"] == pytest.approx(base, abs=1e-9)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_booster_feature_order_must_match_the_manifest(tmp_path: Path, library: str) -> None:
    """A booster trained on [debt_ratio, income, housing] with a manifest listing income
    first is refused at manifest.features; listed in the booster's order, it serves the
    booster's own scores."""
    import lightgbm
    import xgboost

    from .toy import codes, manifest_dict, write_candidate

    data = synthetic_data()
    swapped = ["debt_ratio", "income", "housing"]
    design = codes(data)[:, [1, 0, 2]]
    label = (data["outcome"] == "good").to_numpy(dtype=float)
    folder = tmp_path / "swapped"
    fmt = "xgboost-json" if library == "xgboost" else "lightgbm-text"
    spec = manifest_dict("toy-swapped", fmt)
    write_candidate(folder, spec, data)
    artifact = folder / spec["artifact"]["path"]
    if library == "xgboost":
        booster = xgboost.train(
            {"objective": "binary:logistic", "max_depth": 3, "seed": 0, "nthread": 1},
            xgboost.DMatrix(design, label=label, feature_names=swapped),
            20,
        )

        def own(frame: pd.DataFrame) -> np.ndarray:
            matrix = xgboost.DMatrix(codes(frame)[:, [1, 0, 2]], feature_names=swapped)
            return booster.predict(matrix, output_margin=True)

    else:
        booster = lightgbm.train(
            {"objective": "binary", "num_leaves": 8, "verbose": -1, "seed": 0},
            lightgbm.Dataset(design, label=label, feature_name=swapped),
            20,
        )

        def own(frame: pd.DataFrame) -> np.ndarray:
            return booster.predict(codes(frame)[:, [1, 0, 2]], raw_score=True)

    booster.save_model(str(artifact))
    with pytest.raises(InvalidRequestError) as refused:
        validate_candidate(folder, "cli")
    (issue,) = refused.value.issues
    assert issue.loc == ("manifest", "features")
    assert issue.type == "manifest_mismatch"
    assert "debt_ratio', 'income', 'housing" in issue.msg
    # the same booster under a manifest listing its features in its order serves its scores
    spec["features"] = [spec["features"][1], spec["features"][0], spec["features"][2]]
    write_candidate(folder, spec, data)
    booster.save_model(str(artifact))
    validate_candidate(folder, "cli")
    version, _ = ModelStore(tmp_path / "models").register(
        (folder / "manifest.yaml").read_bytes(),
        {
            p.name: p.read_bytes()
            for p in (artifact, folder / "reference.csv", folder / "evaluation.csv")
        },
        "cli",
    )
    model = LoadedModel.load(version)
    frame = _frame(model, [{"income": 140, "debt_ratio": 0.1, "housing": "own"}])
    np.testing.assert_allclose(model.predictor.margin(frame), own(frame), atol=1e-6)
