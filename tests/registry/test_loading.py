"""Safe loading: skops with a trusted-type list, joblib only for trusted local versions,
and candidates that cannot be loaded or do not fit their manifest."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from service.errors import InvalidRequestError, NotFoundError
from service.registry.artifacts import (
    TRUSTED_SKOPS_TYPES,
    UnsafeArtifactError,
    check_upload_format,
    load_predictor,
)
from service.registry.datafiles import DataFileError
from service.registry.loaded import LoadedModel
from service.registry.manifest import SAFE_FORMATS, ArtifactFormat, Manifest, parse_manifest
from service.registry.predictors import SklearnPredictor
from service.registry.store import ModelStore
from service.registry.validation import CandidateError, validate_candidate

from .toy import (
    FEATURES,
    ROOT,
    Candidate,
    cli_register,
    codes,
    finish,
    manifest_dict,
    parse_cli,
    synthetic_data,
    write_candidate,
)


# --- types that skops must not load unless someone trusted them
def log_income(x: Any) -> Any:
    return np.log1p(x)


class Clip(BaseEstimator, TransformerMixin):
    def fit(self, x: Any, y: Any = None) -> Clip:
        return self

    def transform(self, x: Any) -> Any:
        return np.clip(x, -3, 3)


class Tripwire:
    """Records that it was rebuilt: proves whether loading ran its code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["path"]).write_text("loaded")
        self.__dict__.update(state)


class OpensOnUnpickle:
    """A pickle payload that creates a file when unpickled (as an exploit would)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def qualified(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def pipeline(extra_step: Any | None = None) -> Any:
    numeric: Any = (
        StandardScaler() if extra_step is None else make_pipeline(extra_step, StandardScaler())
    )
    columns = ColumnTransformer(
        [("num", numeric, ["income", "debt_ratio"]), ("cat", OneHotEncoder(), ["housing"])]
    )
    data = synthetic_data()
    return make_pipeline(columns, LogisticRegression()).fit(data[FEATURES], data["outcome"])


def sklearn_candidate(
    folder: Path, model: Any, fmt: str = "skops", name: str = "toy-sk", **manifest: Any
) -> Candidate:
    data = synthetic_data()
    spec = manifest_dict(name, fmt, **manifest)
    write_candidate(folder, spec, data)
    artifact = folder / spec["artifact"]["path"]
    if fmt == "skops":
        skops.io.dump(model, artifact)
    else:
        joblib.dump(model, artifact)

    def probability(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(frame[FEATURES])[:, 1]

    return Candidate(
        folder,
        spec,
        model,
        data,
        lambda f: np.log(probability(f) / (1 - probability(f))),
        probability,
    )


def manifest_of(candidate: Candidate) -> Manifest:
    return parse_manifest(candidate.manifest_path.read_bytes())


def test_the_demo_skops_model_loads_with_the_trusted_list(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "models", tmp_path / "models")
    store = ModelStore(tmp_path / "models")
    store.scan()
    version = store.get("german-credit")
    artifact = version.file("model.skops")
    untrusted = set(skops.io.get_untrusted_types(file=artifact))
    assert untrusted, "the demo model needs some of the extra trusted types"
    assert untrusted <= TRUSTED_SKOPS_TYPES
    model = LoadedModel.load(version)
    assert isinstance(model.predictor, SklearnPredictor)
    frame = model.reference.iloc[:20]
    direct = skops.io.load(artifact, trusted=sorted(untrusted))
    good = list(direct.classes_).index("good")
    np.testing.assert_allclose(
        model.predictor.probability(frame), direct.predict_proba(frame)[:, good], rtol=0, atol=0
    )


def test_a_plain_pipeline_loads_and_predicts_like_the_original(tmp_path: Path) -> None:
    candidate = sklearn_candidate(tmp_path, pipeline())
    assert skops.io.get_untrusted_types(file=candidate.files()[0]) == []
    predictor = load_predictor(manifest_of(candidate), candidate.files()[0], "http")
    frame = candidate.data.iloc[:50][FEATURES]
    np.testing.assert_allclose(
        predictor.probability(frame), candidate.raw_probability(frame), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize(
    "step, refused_type",
    [
        (FunctionTransformer(func=log_income), qualified(log_income)),
        (Clip(), qualified(Clip)),
    ],
    ids=["custom-function", "custom-class"],
)
def test_a_skops_file_with_an_untrusted_type_is_refused_by_name(
    tmp_path: Path, step: Any, refused_type: str
) -> None:
    model = pipeline(step)
    candidate = sklearn_candidate(tmp_path, model)
    artifact = candidate.files()[0]
    assert skops.io.get_untrusted_types(file=artifact) == [refused_type]
    with pytest.raises(UnsafeArtifactError) as caught:
        load_predictor(manifest_of(candidate), artifact, "cli")
    assert str(caught.value) == f"skops artifact holds untrusted types: {[refused_type]}"
    # validation reports it as unsafe (not as a broken file)
    with pytest.raises(UnsafeArtifactError, match=refused_type):
        validate_candidate(candidate.folder, "http")
    # an operator may trust it explicitly; then it loads and predicts like the original
    predictor = load_predictor(manifest_of(candidate), artifact, "cli", [refused_type])
    frame = candidate.data.iloc[:30][FEATURES]
    np.testing.assert_allclose(
        predictor.probability(frame), model.predict_proba(frame)[:, 1], rtol=0, atol=1e-15
    )


def test_refusal_happens_before_any_untrusted_code_runs(tmp_path: Path) -> None:
    marker = tmp_path / "tripwire"
    artifact = tmp_path / "model.skops"
    skops.io.dump(Tripwire(str(marker)), artifact)
    manifest = parse_manifest(yaml.safe_dump(manifest_dict("toy", "skops")))
    with pytest.raises(UnsafeArtifactError, match=qualified(Tripwire)):
        load_predictor(manifest, artifact, "cli")
    assert not marker.exists()
    # the tripwire works: trusting the type runs its code (then fails as a non-model)
    with pytest.raises(ValueError):
        load_predictor(manifest, artifact, "cli", [qualified(Tripwire)])
    assert marker.read_text() == "loaded"


def test_check_upload_format_refuses_joblib_only() -> None:
    for fmt in ArtifactFormat:
        manifest = parse_manifest(yaml.safe_dump(manifest_dict("toy", fmt.value)))
        if fmt in SAFE_FORMATS:
            check_upload_format(manifest)
        else:
            assert fmt is ArtifactFormat.joblib
            with pytest.raises(UnsafeArtifactError) as caught:
                check_upload_format(manifest)
            message = str(caught.value)
            assert "'joblib' cannot be uploaded over HTTP" in message
            for safe in SAFE_FORMATS:
                assert safe.value in message
    # trusted: true does not make joblib uploadable
    trusted = parse_manifest(yaml.safe_dump(manifest_dict("toy", "joblib", trusted=True)))
    with pytest.raises(UnsafeArtifactError):
        check_upload_format(trusted)


@pytest.mark.parametrize(
    "trusted, source",
    [(False, "cli"), (False, "local"), (False, "http"), (True, "http"), (None, "cli")],
)
def test_joblib_is_refused_unless_trusted_and_local(
    tmp_path: Path, trusted: bool | None, source: str
) -> None:
    marker = tmp_path / "pwned"
    artifact = tmp_path / "model.joblib"
    joblib.dump({"model": OpensOnUnpickle(str(marker))}, artifact)
    manifest = parse_manifest(yaml.safe_dump(manifest_dict("toy", "joblib", trusted=trusted)))
    with pytest.raises(UnsafeArtifactError, match="artifact.trusted: true"):
        load_predictor(manifest, artifact, source)
    assert not marker.exists(), "the pickle must not have been opened"


def test_the_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(OpensOnUnpickle(str(marker))))
    assert marker.exists()


@pytest.mark.parametrize("source", ["cli", "local"])
def test_trusted_local_joblib_loads(tmp_path: Path, source: str) -> None:
    model = pipeline(FunctionTransformer(func=log_income))
    candidate = sklearn_candidate(tmp_path, model, fmt="joblib", trusted=True)
    predictor = load_predictor(manifest_of(candidate), candidate.files()[0], source)
    frame = candidate.data.iloc[:40][FEATURES]
    np.testing.assert_allclose(
        predictor.probability(frame), model.predict_proba(frame)[:, 1], rtol=0, atol=1e-15
    )


def test_the_registration_source_decides_for_joblib(tmp_path: Path) -> None:
    """The same trusted joblib version loads when registered locally, not over HTTP."""
    model = pipeline()
    candidate = sklearn_candidate(tmp_path / "c", model, fmt="joblib", trusted=True)
    files = {p.name: p.read_bytes() for p in candidate.files()}
    manifest = candidate.manifest_path.read_bytes()
    local, _ = ModelStore(tmp_path / "local").register(manifest, files, "cli")
    remote, _ = ModelStore(tmp_path / "remote").register(manifest, files, "http")
    assert local.version_id == remote.version_id
    frame = candidate.data.iloc[:10][FEATURES]
    np.testing.assert_allclose(
        LoadedModel.load(local).predictor.probability(frame), model.predict_proba(frame)[:, 1]
    )
    with pytest.raises(UnsafeArtifactError):
        LoadedModel.load(remote)


# --- candidates that cannot be registered


@pytest.mark.parametrize("fmt", ["skops", "xgboost-json", "xgboost-ubj", "lightgbm-text"])
def test_a_corrupted_artifact_is_a_candidate_error(tmp_path: Path, fmt: str) -> None:
    spec = manifest_dict("toy", fmt)
    rng = np.random.default_rng(7)
    write_candidate(tmp_path, spec, synthetic_data(), artifact=rng.bytes(4096))
    with pytest.raises(CandidateError, match=f"artifact could not be loaded as {fmt}"):
        validate_candidate(tmp_path, "http")


def test_classes_that_differ_from_the_manifest_are_refused(tmp_path: Path) -> None:
    candidate = sklearn_candidate(tmp_path, pipeline(), classes=("bad", "fine"), favourable="fine")
    with pytest.raises(InvalidRequestError) as caught:
        validate_candidate(candidate.folder, "http")
    # The artifact loaded: the manifest's classes are what to fix, not the file.
    assert [(i.loc, i.msg, i.type) for i in caught.value.issues] == [
        (
            ("manifest", "classes"),
            "the model's classes_ ['bad', 'good'] differ from the manifest's classes "
            "['bad', 'fine'] (the same labels are required, in any order)",
            "manifest_mismatch",
        )
    ]


def test_a_booster_with_its_features_in_another_order_is_refused_at_the_features(
    tmp_path: Path,
) -> None:
    import xgboost

    data = synthetic_data()
    shuffled = [FEATURES[1], FEATURES[0], FEATURES[2]]
    matrix = xgboost.DMatrix(
        codes(data)[:, [1, 0, 2]],
        label=(data["outcome"] == "good").to_numpy(dtype=float),
        feature_names=shuffled,
    )
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1}, matrix, 3)
    write_candidate(tmp_path, manifest_dict("toy", "xgboost-json"), data)
    booster.save_model(str(tmp_path / "model.json"))
    with pytest.raises(InvalidRequestError) as caught:
        validate_candidate(tmp_path, "http")
    assert [(i.loc, i.msg) for i in caught.value.issues] == [
        (
            ("manifest", "features"),
            f"booster features {shuffled} differ from the manifest features {FEATURES} "
            "(same names in the same order are required)",
        )
    ]


def test_model_inputs_that_differ_from_the_features_are_refused(tmp_path: Path) -> None:
    data = synthetic_data().rename(columns={"income": "salary"})
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["salary", "debt_ratio"]), ("cat", OneHotEncoder(), ["housing"])]
    )
    model = make_pipeline(columns, LogisticRegression()).fit(
        data[["salary", "debt_ratio", "housing"]], data["outcome"]
    )
    sklearn_candidate(tmp_path, model)
    with pytest.raises(CandidateError, match="model inputs .*'salary'.* differ from manifest"):
        validate_candidate(tmp_path, "http")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.drop(columns="housing"), "reference.csv has no column 'housing' (a feature)"),
        (
            lambda d: d.assign(housing="castle"),
            "reference.csv row 1, column 'housing': 'castle' is not a declared category",
        ),
        (lambda d: d.iloc[:0], "reference.csv has no rows"),
        (
            lambda d: d.assign(income="lots"),
            "reference.csv row 1, column 'income': 'lots' is not a number (64 rows",
        ),
    ],
    ids=["missing-column", "unknown-category", "empty", "not-a-number"],
)
def test_bad_reference_data_is_refused(tmp_path: Path, edit: Any, words: str) -> None:
    candidate = sklearn_candidate(tmp_path, pipeline())
    reference = pd.read_csv(candidate.folder / "reference.csv")
    edit(reference).to_csv(candidate.folder / "reference.csv", index=False)
    with pytest.raises(DataFileError) as caught:
        validate_candidate(candidate.folder, "http")
    assert words in str(caught.value)


def test_validation_reports_rows_auc_accuracy_and_base_rate(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    candidate = sklearn_candidate(tmp_path, pipeline())
    report = validate_candidate(candidate.folder, "http").report
    evaluation = candidate.data.iloc[-80:]
    favourable = (evaluation["outcome"] == "good").to_numpy()
    scores = candidate.raw_probability(evaluation)
    assert [(d.role, d.file, d.rows, d.labelled) for d in report.data] == [
        ("reference", "reference.csv", 64, True),
        ("evaluation", "evaluation.csv", 80, True),
    ]
    performance = report.evaluation
    assert performance is not None
    assert performance.roc_auc == pytest.approx(roc_auc_score(favourable, scores), abs=1e-12)
    assert performance.accuracy == pytest.approx(np.mean((scores >= 0.5) == favourable))
    assert performance.base_rate == pytest.approx(favourable.mean())
    assert (performance.threshold, performance.r2, performance.rmse) == (0.5, None, None)
    assert report.orientation is not None
    assert (report.orientation.positive_class, report.orientation.declared_by) == (
        "good",
        "classes_",
    )
    assert report.warnings == []


def test_the_cli_refuses_unsafe_artifacts_and_registers_trusted_joblib(tmp_path: Path) -> None:
    """Real ``xai-service register`` processes (run concurrently)."""
    models = tmp_path / "models"
    untrusted = sklearn_candidate(
        tmp_path / "untrusted", pipeline(FunctionTransformer(func=log_income)), name="untrusted"
    )
    plain_joblib = sklearn_candidate(tmp_path / "joblib", pipeline(), fmt="joblib", name="pickled")
    trusted_model = pipeline()
    trusted = sklearn_candidate(
        tmp_path / "trusted", trusted_model, fmt="joblib", name="trusted", trusted=True
    )
    runs = {c.name: cli_register(c, models) for c in (untrusted, plain_joblib, trusted)}
    results = {name: finish(process) for name, process in runs.items()}

    code, out, err = results["untrusted"]
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: skops artifact holds untrusted types: {[qualified(log_income)]}"
    )
    code, out, err = results["pickled"]
    assert code == 2 and "artifact.trusted: true" in err
    code, out, err = results["trusted"]
    assert code == 0, err
    name, version_id, state, summary = parse_cli(out)
    assert (name, state, summary["data"][0]["rows"]) == ("trusted", "registered", 64)

    store = ModelStore(models)
    store.scan()
    assert store.names() == ["trusted"]
    for refused in ("untrusted", "pickled"):
        with pytest.raises(NotFoundError):
            store.get(refused)
    version = store.get("trusted", version_id)
    assert version.source == "cli"
    frame = trusted.data.iloc[:25][FEATURES]
    np.testing.assert_allclose(
        LoadedModel.load(version).predictor.probability(frame),
        trusted_model.predict_proba(frame)[:, 1],
        rtol=0,
        atol=1e-15,
    )


def test_the_cli_refuses_files_the_manifest_does_not_name(tmp_path: Path) -> None:
    candidate = sklearn_candidate(tmp_path / "c", pipeline())
    extra = tmp_path / "c" / "notes.txt"
    extra.write_text("hello")
    code, out, err = finish(
        cli_register(candidate, tmp_path / "models", [*candidate.files(), extra])
    )
    assert code == 2
    assert "files do not match the manifest: missing [], extra ['notes.txt']" in err
    assert not (tmp_path / "models" / "toy-sk").exists() or not any(
        (tmp_path / "models" / "toy-sk").iterdir()
    )
