"""The compiled preprocessor gives exactly scikit-learn's matrix, or is not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from service.registry.compiled_transform import compile_preprocessor, proven
from service.registry.frame_memo import FrameMemo
from service.registry.loaded import LoadedModel
from service.registry.predictors import SklearnPredictor

COLOURS = ["red", "green", "blue"]
SIZES = ["s", "m", "l", "xl"]


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "colour": pd.array(rng.choice(COLOURS, rows).tolist(), dtype="str"),
            "amount": np.round(rng.normal(100, 40, rows), 2),
            "size": pd.array(rng.choice(SIZES, rows).tolist(), dtype="str"),
            "age": rng.integers(18, 80, rows).astype(float),
        }
    )


PREPROCESSORS = {
    "ordinal + identity": lambda: ColumnTransformer(
        [
            ("cat", OrdinalEncoder(categories=[COLOURS, SIZES]), ["colour", "size"]),
            ("num", FunctionTransformer(None, feature_names_out="one-to-one"), ["amount", "age"]),
        ]
    ),
    "one-hot (drop first) + scaler": lambda: ColumnTransformer(
        [
            ("cat", OneHotEncoder(drop="first", sparse_output=False), ["colour", "size"]),
            ("num", StandardScaler(), ["amount", "age"]),
        ]
    ),
    "one-hot (if binary, sparse) + passthrough remainder, by position": lambda: ColumnTransformer(
        [("cat", OneHotEncoder(drop="if_binary"), [0, 2])], remainder="passthrough"
    ),
    "scaler without mean, dropped remainder": lambda: ColumnTransformer(
        [("num", StandardScaler(with_mean=False), ["age"])], remainder="drop"
    ),
}


@pytest.mark.parametrize("name", sorted(PREPROCESSORS))
def test_compiled_matrix_equals_scikit_learn(name: str) -> None:
    train, other = frame(400, 0), frame(300, 1)
    preprocessor = PREPROCESSORS[name]().fit(train)
    compiled = compile_preprocessor(Pipeline([("prep", preprocessor)]))
    assert compiled is not None, name
    assert proven(compiled, preprocessor, train)
    expected = preprocessor.transform(other)
    expected = expected.toarray() if hasattr(expected, "toarray") else expected
    got = compiled.transform(other)
    assert got is not None and got.dtype == np.float64
    assert np.array_equal(got, expected)  # bit for bit, not approximately


def test_a_value_outside_the_tables_is_left_to_scikit_learn() -> None:
    train = frame(200, 0)
    preprocessor = PREPROCESSORS["ordinal + identity"]().fit(train)
    compiled = compile_preprocessor(preprocessor)
    assert compiled is not None
    odd = frame(3, 2)
    odd["colour"] = pd.array(["red", "purple", "blue"], dtype="str")
    assert compiled.transform(odd) is None  # scikit-learn refuses or maps it, as it would
    nullable = frame(3, 2).astype({"amount": "Float64"})
    nullable.loc[1, "amount"] = pd.NA
    assert compiled.transform(nullable) is None  # scikit-learn refuses pandas.NA here
    assert compiled.transform(frame(3, 2).drop(columns="age")) is None


def test_unsupported_parts_are_not_compiled() -> None:
    train = frame(200, 0)
    binned = ColumnTransformer([("bins", KBinsDiscretizer(n_bins=3), ["amount"])]).fit(train)
    assert compile_preprocessor(binned) is None
    infrequent = ColumnTransformer(
        [("cat", OneHotEncoder(min_frequency=80, sparse_output=False), ["size"])]
    ).fit(train)
    assert compile_preprocessor(infrequent) is None
    pandas_out = PREPROCESSORS["ordinal + identity"]().set_output(transform="pandas").fit(train)
    assert compile_preprocessor(pandas_out) is None


def test_a_transform_that_disagrees_is_not_proven() -> None:
    train = frame(200, 0)
    preprocessor = PREPROCESSORS["one-hot (drop first) + scaler"]().fit(train)
    compiled = compile_preprocessor(preprocessor)
    assert compiled is not None
    preprocessor.transformers_[1][1].mean_ = preprocessor.transformers_[1][1].mean_ + 1e-9
    assert not proven(compiled, preprocessor, train)


def test_demo_models_use_the_compiled_transform_with_identical_scores(
    demo_models: dict[str, LoadedModel],
) -> None:
    for model in demo_models.values():
        predictor = model.predictor
        assert isinstance(predictor, SklearnPredictor) and predictor.transform_compiled
        assert predictor.preprocessor is not None
        rows = model.proof_rows()
        assert np.array_equal(predictor.design(rows), predictor.preprocessor.transform(rows))
        assert np.array_equal(
            predictor.probability(rows), predictor.model.predict_proba(rows)[:, 1]
        )


def test_frame_memo_recomputes_a_frame_changed_in_place() -> None:
    memo, calls = FrameMemo(), []
    rows = frame(4, 0)

    def total() -> float:
        calls.append(1)
        return float(rows["amount"].sum())

    first = memo.get(rows, "total", total)
    assert memo.get(rows.copy(), "total", total) == first and len(calls) == 1
    rows.loc[2, "amount"] += 1.0
    assert memo.get(rows, "total", total) == first + 1.0 and len(calls) == 2
    with_nan = rows.copy()
    with_nan.loc[0, "amount"] = np.nan
    memo.get(with_nan, "total", total)
    memo.get(with_nan, "total", total)
    assert len(calls) == 4  # a missing value never matches: computed again, never wrong


def test_gradient_boosting_on_compiled_design_scores_the_same() -> None:
    train = frame(400, 0)
    labels = (train["amount"] > 100).to_numpy()
    pipeline = Pipeline(
        [("prep", PREPROCESSORS["ordinal + identity"]()), ("boost", GradientBoostingClassifier())]
    ).fit(train, labels)
    compiled = compile_preprocessor(pipeline[:-1])
    assert compiled is not None
    other = frame(100, 3)
    design = compiled.transform(other)
    assert np.array_equal(pipeline[-1].predict_proba(design), pipeline.predict_proba(other))
