"""Train the two German credit demo models reproducibly and register them.

    python scripts/train_demo_models.py [--models-dir models]

Fixed seeds, a stratified 70/30 split, and byte-deterministic skops artifacts, so the
same code and data always give the same version ids.
"""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from service.registry.notice import DEFAULT_TEMPLATE
from service.registry.store import ModelStore

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "german_credit.csv"
FEATURES = ROOT / "scripts" / "german_credit_features.yaml"
TARGET = "creditability"
SEED = 0
REFERENCE_ROWS = 200


def deterministic_skops(model: Any) -> bytes:
    """skops bytes that depend only on the model.

    skops names members by ``id(obj)`` (a memory address) and stamps the current time;
    both are replaced by their order of first appearance and a fixed date.
    """
    raw = zipfile.ZipFile(io.BytesIO(skops.io.dumps(model)))
    schema = raw.read("schema.json").decode()
    ids: dict[str, str] = {}
    for match in OBJECT_ID.finditer(schema):
        ids.setdefault(match.group(2), str(len(ids) + 1))
    renumbered = OBJECT_ID.sub(lambda m: m.group(1) + ids[m.group(2)], schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in raw.infolist():
            name = _member_name(info.filename, ids)
            data = renumbered.encode() if name == "schema.json" else raw.read(info.filename)
            fixed = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            zf.writestr(fixed, data)
    return out.getvalue()


OBJECT_ID = re.compile(r'("__id__": |"file": ")(\d+)(?=\.npy"|[,\s}])')


def _member_name(name: str, ids: dict[str, str]) -> str:
    stem, dot, ext = name.partition(".")
    return f"{ids[stem]}.{ext}" if dot and stem in ids else name


def build_models(features: list[dict[str, Any]]) -> dict[str, Pipeline]:
    categorical = [f["name"] for f in features if f["type"] != "numeric"]
    numeric = [f["name"] for f in features if f["type"] == "numeric"]
    categories = [next(f["categories"] for f in features if f["name"] == c) for c in categorical]
    trees = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("categorical", OrdinalEncoder(categories=categories), categorical),
                        ("numeric", "passthrough", numeric),
                    ],
                    verbose_feature_names_out=False,
                ),
            ),
            (
                "boost",
                GradientBoostingClassifier(
                    n_estimators=150,
                    max_depth=3,
                    learning_rate=0.05,
                    subsample=0.8,
                    random_state=SEED,
                ),
            ),
        ]
    )
    logit = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("categorical", OneHotEncoder(categories=categories), categorical),
                        ("numeric", StandardScaler(), numeric),
                    ],
                    sparse_threshold=0.0,
                ),
            ),
            ("logit", LogisticRegression(C=0.5, max_iter=5000)),
        ]
    )
    return {"german-credit": trees, "german-credit-logit": logit}


DESCRIPTIONS = {
    "german-credit": "Gradient-boosted trees (scikit-learn) on the raw German credit features; "
    "categoricals ordinal-encoded in manifest order. Predicts P(good).",
    "german-credit-logit": "Logistic regression on the raw German credit features "
    "(one-hot categoricals, standardised numerics). Predicts P(good).",
}


def manifest_for(name: str, features: list[dict[str, Any]], auc: float) -> bytes:
    manifest = {
        "schema_version": 1,
        "name": name,
        "description": DESCRIPTIONS[name],
        "task": "binary_classification",
        "target": TARGET,
        "classes": ["bad", "good"],
        "favourable_class": "good",
        "decision_threshold": 0.5,
        "artifact": {"path": "model.skops", "format": "skops"},
        "reference_data": {
            "path": "reference.csv",
            "description": f"{REFERENCE_ROWS} training rows sampled with seed {SEED}",
        },
        "evaluation_data": {"path": "evaluation.csv", "description": "30% stratified hold-out"},
        "features": features,
        "metrics": {"holdout_auc": round(auc, 4)},
        "policy_baseline": "approved",
        "notice_template": DEFAULT_TEMPLATE,
    }
    return yaml.dump(
        manifest, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    ).encode()


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the notice template) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    features = yaml.safe_load(FEATURES.read_text())
    data = pd.read_csv(DATA)
    train, holdout = train_test_split(data, test_size=0.3, random_state=SEED, stratify=data[TARGET])
    reference = train.sample(REFERENCE_ROWS, random_state=SEED)
    store = ModelStore(args.models_dir)
    for name, pipeline in build_models(features).items():
        x, y = train.drop(columns=TARGET), (train[TARGET] == "good").astype(int)
        pipeline.fit(x, y.map({1: "good", 0: "bad"}))
        proba = pipeline.predict_proba(holdout.drop(columns=TARGET))[:, 1]
        auc = roc_auc_score((holdout[TARGET] == "good").astype(int), proba)
        files = {
            "model.skops": deterministic_skops(pipeline),
            "reference.csv": reference.to_csv(index=False).encode(),
            "evaluation.csv": holdout.to_csv(index=False).encode(),
        }
        version, created = store.register(manifest_for(name, features, auc), files, source="cli")
        state = "registered" if created else "already registered"
        print(f"{name}: hold-out AUC {auc:.4f}; version {version.version_id} ({state})")


if __name__ == "__main__":
    main()
