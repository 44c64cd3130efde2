"""Artifacts that would crash native code are refused, and a crash during validation is
contained; a loader's failure is told as what was expected and what the file looks like."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor

from service.registry.artifacts import load_predictor
from service.registry.isolation import validate_isolated
from service.registry.load_errors import sniff
from service.registry.manifest import ArtifactFormat, parse_manifest
from service.registry.tree_checks import MalformedTreeError, check_trees
from service.registry.validation import CandidateError, validate_candidate

from .malformed import (
    aborting_lightgbm_candidate,
    corrupted_tree_candidate,
    skops_declared_as_xgboost,
    tree_pipeline,
)
from .toy import lightgbm_candidate, xgboost_candidate

TREE_REFUSAL = "a tree's node 0 points to children outside the tree or above itself"


def test_a_tree_pointing_outside_itself_is_refused_before_it_predicts(tmp_path: Path) -> None:
    candidate = corrupted_tree_candidate(tmp_path)
    manifest = parse_manifest(candidate.manifest_path.read_bytes())
    with pytest.raises(MalformedTreeError, match=TREE_REFUSAL):
        load_predictor(manifest, tmp_path / "model.skops", "http")
    with pytest.raises(CandidateError) as caught:
        validate_candidate(tmp_path, "http")  # in this process: it would segfault here
    assert str(caught.value) == (
        "artifact could not be loaded as skops: the file looks like a skops/zip archive but "
        f"cannot be read: {TREE_REFUSAL}"
    )


def test_sound_trees_pass_every_check(demo_models: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    x[:, 3] = rng.integers(0, 5, 300)
    y = (x[:, 0] + x[:, 3] > 2).astype(int)
    boosted = HistGradientBoostingClassifier(categorical_features=[3], max_iter=10).fit(x, y)
    forest = RandomForestRegressor(n_estimators=4, random_state=0).fit(x, x[:, 0])
    assert check_trees(boosted) == 10
    assert check_trees(forest) == 4
    assert check_trees(demo_models["german-credit"].predictor.model) == 150
    assert check_trees(demo_models["german-credit-logit"].predictor.model) == 0
    assert check_trees(tree_pipeline()) == 1


def _boosted() -> HistGradientBoostingClassifier:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    x[:, 2] = rng.integers(0, 4, 200)
    y = (x[:, 0] + x[:, 2] > 1.5).astype(int)
    return HistGradientBoostingClassifier(categorical_features=[2], max_iter=3).fit(x, y)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("left", 10**6, "points to children outside"),
        ("right", 0, "above itself"),
        ("feature_idx", 7, "outside its 3"),
        ("bitset_idx", 10**6, "past its category bitsets"),
    ],
)
def test_a_histogram_tree_pointing_outside_itself_is_refused(
    field: str, value: int, words: str
) -> None:
    model = _boosted()
    nodes = next(
        p.nodes for tree in model._predictors for p in tree if p.nodes["is_categorical"].any()
    )
    inner = np.flatnonzero(nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"].astype(bool))
    nodes[field][inner[0]] = value
    with pytest.raises(MalformedTreeError, match=words):
        check_trees(model)


def test_an_artifact_that_aborts_its_loader_kills_only_the_check(tmp_path: Path) -> None:
    aborting = aborting_lightgbm_candidate(tmp_path / "abort")
    with pytest.raises(CandidateError) as caught:
        validate_isolated(aborting.folder, "http")
    assert "crashed the process that loaded it" in str(caught.value)
    assert "killed by SIGABRT" in str(caught.value)
    # this process is unharmed and validates the next candidate
    sound = lightgbm_candidate(tmp_path / "sound", "toy-sound")
    report = validate_isolated(sound.folder, "http")
    assert report == validate_candidate(sound.folder, "http").report.model_dump(mode="json")
    assert report["data"][0]["rows"] > 0


def test_an_overrunning_check_is_stopped(tmp_path: Path) -> None:
    sound = lightgbm_candidate(tmp_path, "toy-slow")
    with pytest.raises(CandidateError, match="did not finish within 0.001 s"):
        validate_isolated(sound.folder, "http", timeout=0.001)


def test_errors_of_the_check_keep_their_kind(tmp_path: Path) -> None:
    wrong = skops_declared_as_xgboost(tmp_path)
    with pytest.raises(CandidateError) as caught:
        validate_isolated(wrong.folder, "http")
    assert str(caught.value) == (
        "artifact could not be loaded as xgboost-json: not an XGBoost JSON model "
        "(the file looks like a skops/zip archive)"
    )


def _skops_bytes() -> bytes:
    buffer = io.BytesIO()
    skops.io.dump(tree_pipeline(), buffer)
    return buffer.getvalue()


def test_a_file_is_named_by_what_it_looks_like(tmp_path: Path) -> None:
    xgb = xgboost_candidate(tmp_path / "json", "toy-json")
    ubj = xgboost_candidate(tmp_path / "ubj", "toy-ubj", fmt="xgboost-ubj")
    lgb = lightgbm_candidate(tmp_path / "lgb", "toy-lgb")
    files = {
        "model.skops": (_skops_bytes(), "a skops/zip archive", ArtifactFormat.skops),
        "model.json": (
            (xgb.folder / "model.json").read_bytes(),
            "an XGBoost JSON model",
            ArtifactFormat.xgboost_json,
        ),
        "model.ubj": (
            (ubj.folder / "model.ubj").read_bytes(),
            "an XGBoost UBJSON model",
            ArtifactFormat.xgboost_ubj,
        ),
        "model.txt": (
            (lgb.folder / "model.txt").read_bytes(),
            "a LightGBM text model",
            ArtifactFormat.lightgbm_text,
        ),
        "model.pkl": (pickle.dumps({"a": 1}), "a pickle (joblib) file", ArtifactFormat.joblib),
        "empty": (b"", "an empty file", None),
        "other.json": (json.dumps({"a": 1}).encode(), "JSON that is not an XGBoost model", None),
        "notes.txt": (b"hello\nworld\n", "text", None),
        "noise": (np.random.default_rng(3).bytes(512), "binary data", None),
    }
    for name, (data, words, fmt) in files.items():
        (tmp_path / name).write_bytes(data)
        assert sniff(tmp_path / name) == (words, fmt), name
