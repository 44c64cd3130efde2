"""Small lenders' models for the reason tests: seeded synthetic data, a scikit-learn
pipeline saved with skops, registered in a scratch store and loaded as the workers do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

EMPLOYMENT = ["student", "employed", "self-employed", "unemployed"]
# log-odds effect of each employment status on approval
EMPLOYMENT_EFFECT = {"student": -2.0, "employed": 0.8, "self-employed": -0.4, "unemployed": -2.5}


def register(
    root: Path, manifest: dict[str, Any], pipeline: Pipeline, reference: pd.DataFrame
) -> LoadedModel:
    """Register ``pipeline`` with ``manifest`` in a store at ``root`` and load it."""
    files = {
        manifest["artifact"]["path"]: skops.io.dumps(pipeline),
        manifest["reference_data"]["path"]: reference.to_csv(index=False).encode(),
    }
    version, _ = ModelStore(root).register(yaml.safe_dump(manifest).encode(), files, "cli")
    return LoadedModel.load(version)


def employment_data(rows: int = 1200, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    employment = rng.choice(EMPLOYMENT, rows, p=[0.2, 0.5, 0.2, 0.1])
    income = rng.normal(50, 15, rows).round(1).clip(0, 200)
    debt = rng.uniform(0, 2, rows).round(2)
    logit = (
        np.array([EMPLOYMENT_EFFECT[e] for e in employment])
        + 0.05 * (income - 50)
        - 1.2 * (debt - 1)
        + 0.6
    )
    outcome = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "approve", "decline")
    return pd.DataFrame(
        {"employment": employment, "income": income, "debt": debt, "outcome": outcome}
    )


def employment_manifest(**employment: Any) -> dict[str, Any]:
    """A manifest whose employment feature takes ``employment``'s reason fields."""
    return {
        "name": "employment-lender",
        "task": "binary_classification",
        "target": "outcome",
        "classes": ["decline", "approve"],
        "favourable_class": "approve",
        "artifact": {"path": "model.skops", "format": "skops"},
        "reference_data": {"path": "reference.csv", "description": "400 applicants"},
        "features": [
            {"name": "employment", "type": "categorical", "categories": EMPLOYMENT, **employment},
            {
                "name": "income",
                "type": "numeric",
                "range": [0, 200],
                "reason": {"code": "IN01", "statement": "Income insufficient"},
            },
            {
                "name": "debt",
                "type": "numeric",
                "range": [0, 2],
                "reason": {"code": "DT01", "statement": "Debt too high"},
            },
        ],
    }


def employment_pipeline(data: pd.DataFrame) -> Pipeline:
    encode = ColumnTransformer(
        [
            ("employment", OneHotEncoder(categories=[EMPLOYMENT]), ["employment"]),
            ("numbers", StandardScaler(), ["income", "debt"]),
        ]
    )
    pipeline = Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000))])
    return pipeline.fit(data[["employment", "income", "debt"]], data["outcome"])
