"""Small real models registered in a scratch store, for exactness tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

COLOURS = ["red", "green", "blue"]
SIZES = ["small", "medium", "large", "huge"]
NUMERIC = ["income", "debt", "years"]
CATEGORICAL = ["colour", "size"]


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 15, n).round(1),
            "debt": rng.gamma(2.0, 5.0, n).round(1),
            "years": rng.integers(0, 30, n).astype(float),
            "colour": rng.choice(COLOURS, n),
            "size": rng.choice(SIZES, n),
        }
    )
    score = (
        0.08 * (frame["income"] - 50)
        - 0.15 * (frame["debt"] - 10)
        + 0.05 * frame["years"]
        + frame["colour"].map({"red": -1.0, "green": 0.5, "blue": 0.2})
        + frame["size"].map({"small": 0.3, "medium": 0.0, "large": -0.4, "huge": -1.0})
        + 0.03 * (frame["income"] - 50) * (frame["size"] == "huge")
    )
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-score)), "yes", "no")
    return frame


def manifest(name: str) -> dict[str, Any]:
    features: list[dict[str, Any]] = [
        {"name": f, "type": "numeric", "reason": {"code": f.upper(), "statement": f"{f} reason"}}
        for f in NUMERIC
    ]
    features += [
        {
            "name": "colour",
            "type": "categorical",
            "categories": COLOURS,
            "reason": {"code": "COL", "statement": "colour reason"},
        },
        {
            "name": "size",
            "type": "ordinal",
            "categories": SIZES,
            "reason": {"code": "SIZ", "statement": "size reason"},
        },
    ]
    return {
        "name": name,
        "task": "binary_classification",
        "target": "outcome",
        "classes": ["no", "yes"],
        "favourable_class": "yes",
        "artifact": {"path": "model.skops", "format": "skops"},
        "reference_data": {"path": "reference.csv", "description": "40 training rows"},
        "features": features,
    }


def pipelines() -> dict[str, Pipeline]:
    ordinal = ColumnTransformer(
        [
            ("cat", OrdinalEncoder(categories=[COLOURS, SIZES]), CATEGORICAL),
            ("num", "passthrough", NUMERIC),
        ]
    )
    onehot = ColumnTransformer(
        [
            ("cat", OneHotEncoder(categories=[COLOURS, SIZES]), CATEGORICAL),
            ("num", StandardScaler(), NUMERIC),
        ],
        sparse_threshold=0.0,
    )
    return {
        "boosted": Pipeline(
            [
                ("pre", ordinal),
                ("model", GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0)),
            ]
        ),
        "forest": Pipeline(
            [
                ("pre", ordinal),
                ("model", RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0)),
            ]
        ),
        "logistic": Pipeline([("pre", onehot), ("model", LogisticRegression(max_iter=2000))]),
        "mlp": Pipeline(
            [
                ("pre", onehot),
                ("model", MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0)),
            ]
        ),
    }


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    """Four small models (trees, forest, logistic, MLP) with a 40-row reference set."""
    root: Path = tmp_path_factory.mktemp("small") / "models"
    store = ModelStore(root)
    train = synthetic(600, seed=1)
    reference = train.sample(40, random_state=0)
    loaded = {}
    for kind, pipeline in pipelines().items():
        pipeline.fit(train[NUMERIC + CATEGORICAL], train["outcome"])
        files = {
            "model.skops": skops.io.dumps(pipeline),
            "reference.csv": reference.to_csv(index=False).encode(),
        }
        version, _ = store.register(yaml.safe_dump(manifest(kind)).encode(), files, "cli")
        loaded[kind] = LoadedModel.load(version)
    return loaded


@pytest.fixture(scope="session")
def probe_rows() -> pd.DataFrame:
    return synthetic(5, seed=99)[NUMERIC + CATEGORICAL]
