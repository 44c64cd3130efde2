"""Train the XGBoost example (a default-risk model scoring P(bad)) on the German credit data.

    python examples/xgboost/train.py [--out FOLDER]

Writes model.json, reference.csv and evaluation.csv (and a copy of manifest.yaml when
FOLDER is not this folder). Fixed seeds and one thread: the same files on every run.
Then register them:

    xai-service register --manifest manifest.yaml model.json reference.csv evaluation.csv
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost
import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data" / "german_credit.csv"
SEED, TRAIN_ROWS, REFERENCE_ROWS = 0, 700, 200


def design(frame: pd.DataFrame, features: list[dict[str, Any]]) -> np.ndarray:
    """What the booster sees: numbers as they are, a category as its index in the
    manifest's ``categories`` (how the service feeds it)."""
    columns = []
    for feature in features:
        values = frame[feature["name"]]
        if "categories" in feature:
            values = values.map({c: i for i, c in enumerate(feature["categories"])})
        columns.append(values.to_numpy(dtype=float))
    return np.column_stack(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    out = parser.parse_args().out
    manifest = yaml.safe_load((HERE / "manifest.yaml").read_text())
    features, target = manifest["features"], manifest["target"]
    names = [f["name"] for f in features]
    data = pd.read_csv(DATA)[[*names, target]]
    order = np.random.default_rng(SEED).permutation(len(data))
    train, holdout = data.iloc[order[:TRAIN_ROWS]], data.iloc[order[TRAIN_ROWS:]]
    # label 1 = "bad": the booster scores the risk of default (artifact.positive_class)
    label = (train[target] == manifest["artifact"]["positive_class"]).to_numpy(dtype=float)
    matrix = xgboost.DMatrix(design(train, features), label=label, feature_names=names)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "seed": SEED}
    booster = xgboost.train({**params, "nthread": 1}, matrix, num_boost_round=80)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "model.json"))
    train.iloc[:REFERENCE_ROWS].to_csv(out / "reference.csv", index=False)
    holdout.to_csv(out / "evaluation.csv", index=False)
    if out.resolve() != HERE:
        shutil.copy(HERE / "manifest.yaml", out / "manifest.yaml")
    print(f"wrote model.json, reference.csv, evaluation.csv to {out}")


if __name__ == "__main__":
    main()
