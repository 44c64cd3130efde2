"""A classifier's probabilities come from its already computed margin only where that gives
exactly ``predict_proba``: proven on the version's rows, for estimators whose binary
probabilities are the logistic function of their decision function."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.registry.loaded import typed_frame
from service.registry.manifest import Manifest
from service.registry.predictors import SklearnPredictor

from .toy import FEATURES, manifest_dict, synthetic_data

ESTIMATORS: dict[str, Any] = {
    "gradient boosting": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "histogram gradient boosting": lambda: HistGradientBoostingClassifier(
        max_iter=30, random_state=0
    ),
    "logistic regression": lambda: LogisticRegression(),
}


def typed(manifest: Manifest, data: pd.DataFrame) -> pd.DataFrame:
    return typed_frame(manifest, {name: data[name].tolist() for name in FEATURES})


def fitted_pipeline(estimator: Any) -> Any:
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["income", "debt_ratio"]), ("cat", OneHotEncoder(), ["housing"])]
    )
    data = synthetic_data()
    return make_pipeline(columns, estimator).fit(data[FEATURES], data["outcome"])


def predictor(estimator: Any, favourable: str) -> tuple[SklearnPredictor, Manifest]:
    model = fitted_pipeline(estimator)
    data = synthetic_data()
    manifest = Manifest.model_validate(manifest_dict("toy", "skops", favourable=favourable))
    built = SklearnPredictor(manifest, model)
    built.speed_up(typed(manifest, data.iloc[:64]))
    return built, manifest


@pytest.mark.parametrize("favourable", ["good", "bad"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_probabilities_from_the_margin_equal_predict_proba_bit_for_bit(
    name: str, favourable: str
) -> None:
    built, manifest = predictor(ESTIMATORS[name](), favourable)
    assert built.probability_from_margin
    column = list(built.model.classes_).index(favourable)
    # rows the proof never saw: a small frame (memoised) and a large one (not memoised)
    for rows in (40, 2500):
        unseen = typed(manifest, synthetic_data(rows, seed=7))
        direct = built.model.predict_proba(unseen)[:, column]
        margin = built.margin(unseen)
        served = built.probability(unseen)
        assert served.dtype == direct.dtype and np.array_equal(served, direct)
        assert np.array_equal(margin, built.margin(unseen))
        assert (margin > 0).tolist() == (served > 0.5).tolist()


def test_other_estimators_keep_predict_proba() -> None:
    built, manifest = predictor(RandomForestClassifier(n_estimators=10, random_state=0), "good")
    assert not built.probability_from_margin
    unseen = typed(manifest, synthetic_data(40, seed=7))
    assert np.array_equal(built.probability(unseen), built.model.predict_proba(unseen)[:, 1])


def test_a_link_that_disagrees_is_not_proven() -> None:
    estimator = GradientBoostingClassifier(n_estimators=30, random_state=0)
    model = fitted_pipeline(estimator)
    data = synthetic_data()
    calibrated = estimator.predict_proba
    estimator.predict_proba = lambda x: calibrated(x) ** 1.0000001  # type: ignore[method-assign]
    manifest = Manifest.model_validate(manifest_dict("toy", "skops"))
    built = SklearnPredictor(manifest, model)
    rows = typed(manifest, data.iloc[:64])
    built.speed_up(rows)
    assert not built.probability_from_margin
    assert np.array_equal(built.probability(rows), model.predict_proba(rows)[:, 1])
