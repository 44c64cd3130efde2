"""Train the LightGBM example (P(good), `purpose` a native categorical) on the German
credit data.

    python examples/lightgbm/train.py [--out FOLDER]

Writes model.txt, reference.csv and evaluation.csv (and a copy of manifest.yaml when
FOLDER is not this folder). Fixed seeds, one thread, deterministic mode: the same files on
every run. Then register them:

    xai-service register --manifest manifest.yaml model.txt reference.csv evaluation.csv
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data" / "german_credit.csv"
SEED, TRAIN_ROWS, REFERENCE_ROWS = 0, 700, 200
NATIVE_CATEGORICAL = "purpose"


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
    # label 1 = classes[1] = "good": the booster's raw score is for the favourable class
    label = (train[target] == manifest["classes"][1]).to_numpy(dtype=float)
    dataset = lightgbm.Dataset(
        design(train, features),
        label=label,
        feature_name=names,
        categorical_feature=[names.index(NATIVE_CATEGORICAL)],
    )
    params = {
        "objective": "binary",
        "num_leaves": 8,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "min_data_per_group": 10,
        "cat_smooth": 5,
        "seed": SEED,
        "num_threads": 1,
        "deterministic": True,
        "verbose": -1,
    }
    booster = lightgbm.train(params, dataset, num_boost_round=60)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "model.txt"))
    train.iloc[:REFERENCE_ROWS].to_csv(out / "reference.csv", index=False)
    holdout.to_csv(out / "evaluation.csv", index=False)
    if out.resolve() != HERE:
        shutil.copy(HERE / "manifest.yaml", out / "manifest.yaml")
    print(f"wrote model.txt, reference.csv, evaluation.csv to {out}")


if __name__ == "__main__":
    main()
