"""A zoo of small real models, trained here from seeded synthetic data and the German
credit data, written as model versions (manifest, artifact, reference and evaluation
CSVs) and registered in a scratch store. Reusable: ``build_zoo(folder)``.

Each entry knows the library's own prediction for the favourable class, computed here
independently of the service, so tests can hold the service to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.special import logit

from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ROWS = 60
EVALUATION_ROWS = 80

GERMAN_NUMERIC = ["duration_in_month", "credit_amount"]
GERMAN_CATEGORICAL = [
    "status_of_existing_checking_account",
    "credit_history",
    "savings_account_and_bonds",
]
SYNTHETIC_NUMERIC = ["income", "debt_ratio"]
SYNTHETIC_CATEGORICAL = ["housing", "region"]
HOUSING = ["rent", "own", "free"]
REGIONS = ["north", "south", "east", "west", "centre", "islands"]


@dataclass
class ZooModel:
    kind: str
    folder: Path  # the files of the version before registration
    manifest: dict[str, Any]
    data: pd.DataFrame  # raw rows with the target column
    # library's own output for the favourable class on a raw frame: margin (log-odds) for
    # boosters and gradient boosting, the value for regressors
    own_margin: Callable[[pd.DataFrame], np.ndarray] = field(repr=False)
    own_probability: Callable[[pd.DataFrame], np.ndarray] | None = field(repr=False)
    loaded: LoadedModel | None = None

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def regression(self) -> bool:
        return self.manifest["task"] == "regression"

    def own(self, frame: pd.DataFrame, space: str) -> np.ndarray:
        if space == "probability":
            assert self.own_probability is not None
            return self.own_probability(frame)
        return self.own_margin(frame)


def german(rows: int = 700) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    data = pd.read_csv(ROOT / "data" / "german_credit.csv").iloc[:rows]
    data = data[GERMAN_CATEGORICAL + GERMAN_NUMERIC + ["creditability"]].copy()
    data[GERMAN_NUMERIC] = data[GERMAN_NUMERIC].astype(float)
    return data.rename(columns={"creditability": "outcome"}), {
        c: sorted(data[c].unique()) for c in GERMAN_CATEGORICAL
    }


def synthetic(rows: int = 500, seed: int = 3) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Rounded values (many rows sit on split thresholds), a binary label, an amount."""
    rng = np.random.default_rng(seed)
    income = np.round(rng.uniform(10, 150, rows))
    debt = np.round(rng.uniform(0, 3, rows), 2)
    housing = rng.integers(0, 3, rows)
    region = rng.integers(0, len(REGIONS), rows)
    region_effect = np.array([0.8, -0.5, 0.3, -1.0, 0.0, 1.2])[region]
    score = 0.03 * income - 1.1 * debt + np.array([0.0, 0.9, -0.6])[housing] + region_effect
    score += rng.logistic(size=rows) * 0.7 - 1.0
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt,
            "housing": [HOUSING[h] for h in housing],
            "region": [REGIONS[r] for r in region],
            "outcome": np.where(score > 0, "good", "bad"),
            "amount": np.round(0.05 * income - 2 * debt + 3 * region_effect, 3),
        }
    ), {"housing": HOUSING, "region": REGIONS}


def features(numeric: list[str], categories: dict[str, list[str]]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {"name": n, "type": "numeric", "reason": {"code": f"N{i}", "statement": f"{n} reason"}}
        for i, n in enumerate(numeric)
    ]
    specs += [
        {
            "name": n,
            "type": "categorical",
            "categories": cats,
            "reason": {"code": f"C{i}", "statement": f"{n} reason"},
        }
        for i, (n, cats) in enumerate(categories.items())
    ]
    return specs


def codes(frame: pd.DataFrame, names: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """What a booster sees (CodedPredictor): numerics, categories as manifest indices."""
    columns = []
    for name in names:
        if name in categories:
            index = {c: i for i, c in enumerate(categories[name])}
            columns.append(np.array([index[v] for v in frame[name]], dtype=float))
        else:
            columns.append(frame[name].to_numpy(dtype=float))
    return np.column_stack(columns)


def _write(
    folder: Path,
    kind: str,
    data: pd.DataFrame,
    feature_specs: list[dict[str, Any]],
    artifact: tuple[str, str],
    task: dict[str, Any],
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f["name"] for f in feature_specs]
    keep = [*names, task["target"]]
    data.iloc[:REFERENCE_ROWS][keep].to_csv(folder / "reference.csv", index=False)
    data.iloc[-EVALUATION_ROWS:][keep].to_csv(folder / "evaluation.csv", index=False)
    manifest = {
        "schema_version": 1,
        "name": f"zoo-{kind}",
        "description": f"zoo model {kind}",
        "artifact": {"path": artifact[0], "format": artifact[1]},
        "reference_data": {"path": "reference.csv", "description": f"{REFERENCE_ROWS} rows"},
        "evaluation_data": {"path": "evaluation.csv"},
        "features": feature_specs,
        **task,
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return manifest


def _labels(data: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    out = data.copy()
    out["outcome"] = out["outcome"].map(mapping)
    return out


def xgboost_model(folder: Path, kind: str, fmt: str) -> ZooModel:
    """German credit subset; classes [bad, good] as [negative, positive]."""
    import xgboost

    data, categories = german()
    names = GERMAN_NUMERIC + GERMAN_CATEGORICAL
    label = (data["outcome"] == "good").to_numpy(dtype=float)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 0, "nthread": 1},
        xgboost.DMatrix(codes(data, names, categories), label=label, feature_names=names),
        30,
    )
    path = "model.json" if fmt == "xgboost-json" else "model.ubj"
    task = {"task": "binary_classification", "target": "outcome", "classes": ["bad", "good"],
            "favourable_class": "good"}  # fmt: skip
    manifest = _write(folder, kind, data, features(GERMAN_NUMERIC, categories), (path, fmt), task)
    booster.save_model(str(folder / path))

    def margin(frame: pd.DataFrame) -> np.ndarray:
        matrix = xgboost.DMatrix(codes(frame, names, categories), feature_names=names)
        return np.asarray(booster.predict(matrix, output_margin=True), dtype=float)

    def probability(frame: pd.DataFrame) -> np.ndarray:
        matrix = xgboost.DMatrix(codes(frame, names, categories), feature_names=names)
        return np.asarray(booster.predict(matrix), dtype=float)

    return ZooModel(kind, folder, manifest, data, margin, probability)


def lightgbm_model(folder: Path, kind: str, one_hot: bool) -> ZooModel:
    """Native categorical splits on the category codes: one-vs-rest (``one_hot``, German
    subset, integer labels 0/1) or many-vs-many (synthetic, labels 'No'/'Yes' with the
    favourable class 'No' scored as the booster's negative class)."""
    import lightgbm

    if one_hot:
        data, categories = german()
        data = _labels(data, {"good": "1", "bad": "0"})
        numeric, positive, classes, favourable = GERMAN_NUMERIC, "1", ["0", "1"], "1"
    else:
        data, categories = synthetic()
        data = _labels(data, {"good": "No", "bad": "Yes"})
        numeric, positive, classes, favourable = SYNTHETIC_NUMERIC, "Yes", ["No", "Yes"], "No"
    names = numeric + list(categories)
    params = {"objective": "binary", "num_leaves": 8, "learning_rate": 0.2, "verbose": -1,
              "seed": 0, "num_threads": 1, "min_data_per_group": 5, "cat_smooth": 1.0,
              "max_cat_to_onehot": 16 if one_hot else 1}  # fmt: skip
    label = (data["outcome"] == positive).to_numpy(dtype=float)
    cat_index = [names.index(c) for c in categories]
    booster = lightgbm.train(
        params,
        lightgbm.Dataset(
            codes(data, names, categories),
            label=label,
            feature_name=names,
            categorical_feature=cat_index,
        ),  # fmt: skip
        30,
    )
    task = {"task": "binary_classification", "target": "outcome", "classes": classes,
            "favourable_class": favourable}  # fmt: skip
    manifest = _write(folder, kind, data, features(numeric, categories),
                      ("model.txt", "lightgbm-text"), task)  # fmt: skip
    booster.save_model(str(folder / "model.txt"))
    sign = 1.0 if favourable == positive else -1.0

    def margin(frame: pd.DataFrame) -> np.ndarray:
        raw = booster.predict(codes(frame, names, categories), raw_score=True)
        return sign * np.asarray(raw, dtype=float)

    def probability(frame: pd.DataFrame) -> np.ndarray:
        p = np.asarray(booster.predict(codes(frame, names, categories)), dtype=float)
        return p if sign > 0 else 1 - p

    return ZooModel(kind, folder, manifest, data, margin, probability)


def sklearn_model(folder: Path, kind: str) -> ZooModel:
    """Pipelines saved with skops: 'hgb' (HistGradientBoosting with native categorical
    splits, German subset), 'rf-classifier' (labels 'approved'/'declined', favourable
    first), 'rf-regressor', 'gb-onehot' (gradient boosting on one-hot columns)."""
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if kind == "hgb":
        data, categories = german()
        numeric = GERMAN_NUMERIC
    else:
        data, categories = synthetic()
        numeric = SYNTHETIC_NUMERIC
        if kind == "rf-classifier":
            data = _labels(data, {"good": "approved", "bad": "declined"})
    cats = list(categories)
    encoder: Any = (
        OneHotEncoder(categories=[categories[c] for c in cats], sparse_output=False)
        if kind == "gb-onehot"
        else OrdinalEncoder(categories=[categories[c] for c in cats])
    )
    pre = ColumnTransformer([("cat", encoder, cats), ("num", "passthrough", numeric)])
    estimator: Any = {
        "hgb": HistGradientBoostingClassifier(
            max_iter=30, max_depth=3, categorical_features=list(range(len(cats))),
            random_state=0,
        ),
        "rf-classifier": RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0),
        "rf-regressor": RandomForestRegressor(n_estimators=15, max_depth=4, random_state=0),
        "gb-onehot": GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0),
    }[kind]  # fmt: skip
    pipeline = Pipeline([("pre", pre), ("model", estimator)])
    regression = kind == "rf-regressor"
    target = "amount" if regression else "outcome"
    pipeline.fit(data[numeric + cats], data[target])
    if regression:
        task: dict[str, Any] = {"task": "regression", "target": "amount"}
    else:
        favourable = "approved" if kind == "rf-classifier" else "good"
        classes = sorted(data["outcome"].unique())
        task = {"task": "binary_classification", "target": "outcome", "classes": classes,
                "favourable_class": favourable}  # fmt: skip
    manifest = _write(folder, kind, data, features(numeric, categories),
                      ("model.skops", "skops"), task)  # fmt: skip
    (folder / "model.skops").write_bytes(skops.io.dumps(pipeline))
    names = numeric + cats

    def probability(frame: pd.DataFrame) -> np.ndarray:
        column = list(pipeline.classes_).index(task["favourable_class"])
        return np.asarray(pipeline.predict_proba(frame[names]), dtype=float)[:, column]

    def margin(frame: pd.DataFrame) -> np.ndarray:
        if regression:
            return np.asarray(pipeline.predict(frame[names]), dtype=float)
        if hasattr(pipeline[-1], "decision_function"):
            sign = 1.0 if pipeline.classes_[1] == task["favourable_class"] else -1.0
            return sign * np.asarray(pipeline.decision_function(frame[names]), dtype=float)
        return logit(np.clip(probability(frame), 1e-15, 1 - 1e-15))

    return ZooModel(kind, folder, manifest, data, margin, None if regression else probability)


BUILDERS: dict[str, Callable[[Path], ZooModel]] = {
    "xgb-json": lambda f: xgboost_model(f, "xgb-json", "xgboost-json"),
    "xgb-ubj": lambda f: xgboost_model(f, "xgb-ubj", "xgboost-ubj"),
    "lgb-onehot": lambda f: lightgbm_model(f, "lgb-onehot", one_hot=True),
    "lgb-native": lambda f: lightgbm_model(f, "lgb-native", one_hot=False),
    "hgb": lambda f: sklearn_model(f, "hgb"),
    "rf-classifier": lambda f: sklearn_model(f, "rf-classifier"),
    "rf-regressor": lambda f: sklearn_model(f, "rf-regressor"),
    "gb-onehot": lambda f: sklearn_model(f, "gb-onehot"),
}


def build_zoo(folder: Path, kinds: list[str] | None = None) -> dict[str, ZooModel]:
    """Write every kind under ``folder/<kind>``, register it in ``folder/models`` and load."""
    store = ModelStore(folder / "models")
    zoo = {}
    for kind in kinds or list(BUILDERS):
        entry = BUILDERS[kind](folder / kind)
        files = {
            p.name: p.read_bytes() for p in entry.folder.iterdir() if p.name != "manifest.yaml"
        }
        version, _ = store.register((entry.folder / "manifest.yaml").read_bytes(), files, "cli")
        entry.loaded = LoadedModel.load(version)
        zoo[kind] = entry
    return zoo
