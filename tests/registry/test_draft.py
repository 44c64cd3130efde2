"""``xai-service manifest draft``: a starting manifest inferred from the data and the
artifact, whose placeholders registration refuses until they are written."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml

from service.registry.draft import draft_manifest
from service.registry.draft_infer import DraftError, protected_match
from service.registry.manifest import parse_manifest

from .test_loading import pipeline
from .toy import CLI, FEATURES, HOUSING, ROOT, codes, parse_cli, synthetic_data

GERMAN = ROOT / "data" / "german_credit.csv"
PROTECTED = {"personal_status_and_sex", "age_in_years", "foreign_worker"}


def drafted(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def test_the_german_credit_draft_infers_types_and_flags_protected_attributes() -> None:
    data = pd.read_csv(GERMAN)
    text = draft_manifest(GERMAN, "creditability")
    manifest = drafted(text)
    assert manifest["name"] == "german_credit"
    assert (manifest["task"], manifest["target"]) == ("binary_classification", "creditability")
    assert manifest["classes"] == ["bad", "good"]
    assert manifest["favourable_class"] == "TODO: bad or good"
    features = {f["name"]: f for f in manifest["features"]}
    assert list(features) == [c for c in data.columns if c != "creditability"]
    assert {n for n, f in features.items() if f.get("protected")} == PROTECTED
    for name, feature in features.items():
        column = data[name]
        if name in PROTECTED:
            assert feature["mutable"] is False and "reason" not in feature
        else:
            assert feature["reason"]["statement"].startswith("TODO: ")
        if pd.api.types.is_numeric_dtype(column):
            assert feature["type"] == "numeric"
            assert feature["range"] == [int(column.min()), int(column.max())]
            assert feature["integer"] is True
        else:
            assert feature["type"] == "categorical"
            assert feature["categories"] == sorted(column.unique())
    assert "# REVIEW: looks like a protected attribute (name contains 'sex')" in text
    assert len({f["reason"]["code"] for f in features.values() if "reason" in f}) == 17


@pytest.mark.parametrize(
    "name, token",
    [
        ("age_in_years", "age"),
        ("ApplicantGender", "gender"),
        ("marital_status", "marital"),
        ("RaceEthnicity", "race"),
        ("national_origin", "national"),
        ("religion", "religion"),
        ("foreign_worker", "foreign"),
        ("mortgage_amount", None),
        ("percentage", None),
        ("average_balance", None),
    ],
)
def test_protected_attributes_are_recognised_by_whole_words(name: str, token: str | None) -> None:
    assert protected_match(name) == token


def _write(folder: Path, data: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.csv"
    data.to_csv(path, index=False)
    return path


def test_features_follow_the_artifacts_order_and_stored_categories(tmp_path: Path) -> None:
    """A LightGBM model trained on pandas categoricals stores their categories: the draft
    keeps the model's input order and that category order (not the sorted one)."""
    import lightgbm

    data = synthetic_data()
    order = ["housing", "debt_ratio", "income"]
    frame = data[order].assign(housing=pd.Categorical(data["housing"], categories=HOUSING))
    label = (data["outcome"] == "good").astype(int)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0}
    model = lightgbm.train({**params, "min_data_per_group": 5}, lightgbm.Dataset(frame, label), 20)
    model.save_model(str(tmp_path / "model.txt"))
    train = _write(tmp_path, data[[*FEATURES, "outcome", "amount"]])
    text = draft_manifest(train, "outcome", tmp_path / "model.txt", favourable="good")
    manifest = drafted(text)
    assert [f["name"] for f in manifest["features"]] == order
    assert manifest["features"][0]["categories"] == HOUSING
    assert "categories: in the order the model stores them" in text
    assert "the model does not use (leave them out): ['amount']" in text
    assert manifest["artifact"] == {
        "path": "model.txt",
        "format": "lightgbm-text",
        "positive_class": "good",
    }
    assert manifest["classes"] == ["bad", "good"]
    parse_manifest(text)  # favourable given: it parses (the statements are still TODO)


def test_an_xgboost_model_scoring_the_first_class_is_drafted_with_its_positive_class(
    tmp_path: Path,
) -> None:
    import xgboost

    data = synthetic_data()
    label = (data["outcome"] == "bad").to_numpy(dtype=float)  # scores "bad"
    numeric = ["income", "debt_ratio"]
    matrix = xgboost.DMatrix(codes(data)[:, :2], label=label, feature_names=numeric)
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1, "seed": 0}, matrix, 20)
    booster.save_model(str(tmp_path / "model.json"))
    train = _write(tmp_path, data[[*FEATURES, "outcome"]])
    text = draft_manifest(train, "outcome", tmp_path / "model.json")
    manifest = drafted(text)
    assert [f["name"] for f in manifest["features"]] == numeric
    assert manifest["artifact"]["positive_class"] == "bad"
    assert manifest["classes"] == ["good", "bad"]  # [negative, positive]
    assert "the booster's raw score has ROC AUC" in text and "for 'bad'" in text


def test_a_draft_needs_the_target_and_two_classes_or_numbers(tmp_path: Path) -> None:
    data = synthetic_data()
    train = _write(tmp_path, data)
    with pytest.raises(DraftError, match="has no column 'label'"):
        draft_manifest(train, "label")
    with pytest.raises(DraftError, match="target 'housing' has 3 distinct values"):
        draft_manifest(train, "housing")
    regression = drafted(draft_manifest(train, "amount"))
    assert (regression["task"], "classes" in regression) == ("regression", False)


def test_a_drafted_manifest_registers_once_its_placeholders_are_written(tmp_path: Path) -> None:
    """Real CLI processes: draft -> register refused naming each placeholder -> written ->
    registered with its report."""
    data = synthetic_data()
    model = pipeline()
    skops.io.dump(model, tmp_path / "model.skops")
    _write(tmp_path, data[[*FEATURES, "outcome"]])
    data[[*FEATURES, "outcome"]].iloc[:64].to_csv(tmp_path / "reference.csv", index=False)
    data[[*FEATURES, "outcome"]].iloc[-80:].to_csv(tmp_path / "evaluation.csv", index=False)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
        )

    manifest = tmp_path / "manifest.yaml"
    common = ["--data", str(tmp_path / "train.csv"), "--target", "outcome"]
    drafted_run = cli(
        "manifest",
        "draft",
        *common,
        "--model",
        str(tmp_path / "model.skops"),
        "--favourable",
        "good",
        "--out",
        str(manifest),
    )
    assert drafted_run.returncode == 0, drafted_run.stderr
    assert (
        drafted_run.stdout.strip()
        == f"wrote {manifest}: review it and replace its 3 TODO placeholders"
    )
    again = cli("manifest", "draft", *common, "--out", str(manifest))
    assert again.returncode == 2 and "exists; use --force to overwrite" in again.stderr
    files = [str(tmp_path / n) for n in ("model.skops", "reference.csv", "evaluation.csv")]
    register = [
        "register",
        "--json",
        "--manifest",
        str(manifest),
        *files,
        "--models-dir",
        str(tmp_path / "models"),
    ]
    refused = cli(*register)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"error: manifest.features.{i}.reason.statement: feature '{name}': reason.statement is "
        f"still a placeholder ('TODO: the statement an applicant reads when {name} counts "
        "against them'); write it before registering"
        for i, name in enumerate(FEATURES)
    ]
    written = yaml.safe_load(manifest.read_text())
    for feature in written["features"]:
        feature["reason"]["statement"] = f"{feature['name']} does not meet our standards"
    manifest.write_text(yaml.safe_dump(written, sort_keys=False))
    registered = cli(*register)
    assert registered.returncode == 0, registered.stderr
    name, _, state, report = parse_cli(registered.stdout)
    assert (name, state) == ("train", "registered")
    assert report["orientation"]["declared_by"] == "classes_"
    assert report["evaluation"]["roc_auc"] > 0.8
    assert np.isclose(
        report["evaluation"]["base_rate"], (data["outcome"].iloc[-80:] == "good").mean()
    )


def test_only_todo_placeholders_are_refused() -> None:
    from service.registry.manifest import Manifest
    from service.registry.validation import placeholder_issues

    from .toy import manifest_dict

    spec = manifest_dict("toy", "xgboost-json")
    spec["features"][0]["reason"]["statement"] = "TODO: say why"
    spec["features"][1]["reason"]["statement"] = "Todos los ingresos"  # not a placeholder
    spec["features"][2]["reason"]["statement"] = "TODOS"  # nor is this
    spec["description"] = "TODO"
    issues = placeholder_issues(Manifest.model_validate(spec))
    assert [(i.loc, i.msg) for i in issues] == [
        (
            ("manifest", "description"),
            "description is still a placeholder ('TODO'); write it before registering",
        ),
        (
            ("manifest", "features", 0, "reason", "statement"),
            "feature 'income': reason.statement is still a placeholder ('TODO: say why'); "
            "write it before registering",
        ),
    ]


def test_a_drafts_placeholders_are_refused_together_the_favourable_class_included() -> None:
    from service.errors import InvalidRequestError

    from .toy import manifest_dict

    spec = manifest_dict("toy", "xgboost-json")
    spec["favourable_class"] = "TODO: bad or good"
    spec["features"][0]["reason"]["statement"] = "TODO: say why"
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(yaml.safe_dump(spec))
    # Not "favourable_class must be one of classes", then the statements in a second round.
    assert [(i.loc, i.msg, i.type) for i in caught.value.issues] == [
        (
            ("manifest", "favourable_class"),
            "favourable_class is still a placeholder ('TODO: bad or good'); write it before "
            "registering",
            "placeholder",
        ),
        (
            ("manifest", "features", 0, "reason", "statement"),
            "feature 'income': reason.statement is still a placeholder ('TODO: say why'); "
            "write it before registering",
            "placeholder",
        ),
    ]
