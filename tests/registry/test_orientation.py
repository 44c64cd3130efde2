"""The orientation of a classifier's score is explicit and checked: a booster scores its
manifest's positive class (artifact.positive_class, else classes[1]); scikit-learn models
take it from classes_. Labelled rows that rank backwards (ROC AUC < 0.5) are refused with
the likely cause; the right declaration registers with the decisions the booster makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from service.errors import InvalidRequestError
from service.registration import candidate_model
from service.registry.validation import validate_candidate

from .test_loading import pipeline
from .toy import (
    FEATURES,
    FORMAT_FILES,
    codes,
    manifest_dict,
    synthetic_data,
    train_lightgbm,
    train_xgboost,
    write_candidate,
)

EVALUATION = slice(-80, None)


def integer_labels(data: pd.DataFrame) -> pd.DataFrame:
    """The same data labelled 1 (good) / 0 (bad)."""
    return data.assign(outcome=(data["outcome"] == "good").astype(int))


def booster(library: str, data: pd.DataFrame, positive: Any) -> tuple[Any, Any]:
    """A booster trained with label 1 = ``positive``; and its own P(label 1) on a frame."""
    relabelled = data.assign(outcome=np.where(data["outcome"] == positive, "good", "bad"))
    if library == "xgboost":
        import xgboost

        model = train_xgboost(relabelled)
        return model, lambda f: model.predict(xgboost.DMatrix(codes(f), feature_names=FEATURES))
    model = train_lightgbm(relabelled)
    return model, lambda f: model.predict(codes(f))


def write(
    folder: Path,
    fmt: str,
    model: Any,
    data: pd.DataFrame,
    classes: list[str],
    favourable: str,
    positive: str | None = None,
    evaluation: bool = True,
) -> Path:
    spec = manifest_dict(
        "toy-orient", fmt, classes=classes, favourable=favourable, evaluation=evaluation
    )
    if positive is not None:
        spec["artifact"]["positive_class"] = positive
    write_candidate(folder, spec, data)
    artifact = folder / FORMAT_FILES[fmt]
    if fmt == "skops":
        import skops.io

        skops.io.dump(model, artifact)
    else:
        model.save_model(str(artifact))
    return folder


FORMATS = {"xgboost": "xgboost-json", "lightgbm": "lightgbm-text"}
# (classes, favourable, positive_class, accepted) for a booster trained with label 1 = good
BOOSTER_CASES = {
    "negative-positive": (["bad", "good"], "good", None, True),
    "favourable-bad": (["bad", "good"], "bad", None, True),
    "alphabetical-but-inverted": (["good", "bad"], "good", None, False),
    "explicit-positive": (["good", "bad"], "good", "good", True),
    "explicit-but-wrong": (["bad", "good"], "good", "bad", False),
}


@pytest.mark.parametrize("case", list(BOOSTER_CASES))
@pytest.mark.parametrize("library", list(FORMATS))
def test_a_booster_is_oriented_by_its_positive_class(
    tmp_path: Path, library: str, case: str
) -> None:
    classes, favourable, positive, accepted = BOOSTER_CASES[case]
    data = synthetic_data()
    model, own = booster(library, data, "good")
    folder = write(tmp_path, FORMATS[library], model, data, classes, favourable, positive)
    if not accepted:
        with pytest.raises(InvalidRequestError) as caught:
            validate_candidate(folder, "http")
        (issue,) = caught.value.issues
        assert issue.loc == ("manifest", "artifact", "positive_class")
        assert issue.type == "inverted_scores"
        scored = positive or classes[1]
        evaluation = data.iloc[EVALUATION]
        # the wrong declaration flips the booster's P(good): 1 - its own AUC
        auc = 1 - roc_auc_score(evaluation["outcome"] == "good", own(evaluation))
        assert issue.msg.startswith(
            f"evaluation.csv: the model's scores for the favourable class '{favourable}' have "
            f"ROC AUC {auc:.3f} < 0.5 against the labels in column 'outcome'"
        )
        declared = "artifact.positive_class" if positive else "classes[1]"
        assert (
            f"Likely cause: inverted class order. The booster's raw score is taken to be for "
            f"'{scored}' ({declared}), but it was probably trained with 'good' as label 1: "
            "set artifact.positive_class: good" in issue.msg
        )
        if positive is None:
            assert issue.msg.endswith("(or list classes as [bad, good]).")
        return
    candidate = validate_candidate(folder, "http")
    report = candidate.report
    assert report.orientation is not None
    assert report.orientation.positive_class == "good"
    assert report.orientation.declared_by == (
        "artifact.positive_class" if positive else "classes[1]"
    )
    assert report.orientation.checked_on == "evaluation.csv"
    assert report.evaluation is not None and report.evaluation.roc_auc is not None
    assert report.evaluation.roc_auc >= 0.5
    _decisions_are_the_boosters(tmp_path, candidate, own, favourable, "good")


def _decisions_are_the_boosters(
    folder: Path, candidate: Any, own: Any, favourable: Any, trained_positive: Any
) -> None:
    """P(favourable) and the label at the threshold are what the booster itself says."""
    model = candidate_model(folder, "http", candidate)
    rows = synthetic_data().iloc[100:160]
    frame = model.frame(rows[FEATURES].to_dict("records"))
    scores = own(rows)
    expected = scores if str(favourable) == str(trained_positive) else 1 - scores
    predictions = model.predictions(frame)
    got = np.array([p["probability"] for p in predictions])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    other = model.manifest.unfavourable_class
    assert [p["label"] for p in predictions] == [
        str(favourable) if p >= 0.5 else other for p in got
    ]
    assert len({p["label"] for p in predictions}) == 2


@pytest.mark.parametrize("library", list(FORMATS))
@pytest.mark.parametrize("classes, accepted", [(["0", "1"], True), (["1", "0"], False)])
def test_integer_labels_follow_the_same_rule(
    tmp_path: Path, library: str, classes: list[str], accepted: bool
) -> None:
    data = integer_labels(synthetic_data())
    model, own = booster(library, data, 1)
    folder = write(tmp_path, FORMATS[library], model, data, classes, "1")
    if not accepted:
        with pytest.raises(InvalidRequestError, match="set artifact.positive_class: 1 "):
            validate_candidate(folder, "http")
        return
    candidate = validate_candidate(folder, "http")
    assert candidate.report.evaluation is not None
    assert candidate.report.evaluation.roc_auc is not None
    assert candidate.report.evaluation.roc_auc > 0.7
    _decisions_are_the_boosters(tmp_path, candidate, own, 1, 1)


@pytest.mark.parametrize("labels", ["strings", "integers"])
@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_a_scikit_learn_pipeline_ignores_the_order_of_classes(
    tmp_path: Path, labels: str, order: str
) -> None:
    data = synthetic_data() if labels == "strings" else integer_labels(synthetic_data())
    fitted = pipeline().fit(data[FEATURES], data["outcome"])
    favourable = "good" if labels == "strings" else "1"
    classes = sorted(str(c) for c in fitted.classes_)
    classes = classes if order == "sorted" else classes[::-1]
    folder = write(tmp_path, "skops", fitted, data, classes, favourable)
    candidate = validate_candidate(folder, "http")
    orientation = candidate.report.orientation
    assert orientation is not None
    assert (orientation.positive_class, orientation.declared_by) == (favourable, "classes_")
    evaluation = data.iloc[EVALUATION]
    own = fitted.predict_proba(evaluation[FEATURES])[:, 1]
    expected = roc_auc_score(evaluation["outcome"].astype(str) == favourable, own)
    assert candidate.report.evaluation is not None
    assert candidate.report.evaluation.roc_auc == pytest.approx(expected, abs=1e-12)
    _decisions_are_the_boosters(
        tmp_path,
        candidate,
        lambda f: fitted.predict_proba(f[FEATURES])[:, 1],  # P(classes_[1] = favourable)
        favourable,
        favourable,
    )


def test_a_scikit_learn_positive_class_must_be_its_classes_1(tmp_path: Path) -> None:
    data = synthetic_data()
    fitted = pipeline()
    folder = write(tmp_path, "skops", fitted, data, ["bad", "good"], "good", positive="bad")
    with pytest.raises(InvalidRequestError) as caught:
        validate_candidate(folder, "http")
    (issue,) = caught.value.issues
    assert issue.loc == ("manifest", "artifact", "positive_class")
    assert "artifact.positive_class 'bad' is not the class this model scores" in issue.msg
    assert "scores classes_[1] 'good'; remove positive_class or set it to 'good'" in issue.msg


def test_without_evaluation_data_the_reference_labels_check_it(tmp_path: Path) -> None:
    data = synthetic_data()
    model, _ = booster("xgboost", data, "good")
    folder = write(tmp_path, "xgboost-json", model, data, ["bad", "good"], "good", evaluation=False)
    report = validate_candidate(folder, "http").report
    assert report.orientation is not None and report.orientation.checked_on == "reference.csv"
    assert report.evaluation is None
    assert any(w.startswith("orientation checked on the reference rows") for w in report.warnings)
    # ... and an inverted booster is refused on them
    inverted = write(
        tmp_path / "inverted",
        "xgboost-json",
        model,
        data,
        ["good", "bad"],
        "good",
        evaluation=False,
    )
    with pytest.raises(InvalidRequestError, match=r"reference\.csv: the model's scores for the"):
        validate_candidate(inverted, "http")


def test_a_booster_without_labelled_rows_is_registered_with_a_warning(tmp_path: Path) -> None:
    data = synthetic_data()
    model, _ = booster("lightgbm", data, "good")
    folder = write(
        tmp_path, "lightgbm-text", model, data, ["bad", "good"], "good", evaluation=False
    )
    data[FEATURES].iloc[:64].to_csv(folder / "reference.csv", index=False)  # no target column
    report = validate_candidate(folder, "http").report
    assert report.orientation is not None and report.orientation.checked_on is None
    assert report.warnings == [
        "orientation not checked: no labelled rows with both classes; the booster's raw score "
        "is taken to be for 'good' (classes[1]). Register with evaluation data (the target "
        "column) to have it checked",
        "no labelled evaluation data: the model's quality was not measured",
    ]
