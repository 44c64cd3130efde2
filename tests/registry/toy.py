"""Small real models for the registry tests: synthetic lending data, XGBoost/LightGBM
boosters fed categorical codes, their manifests, and a brute-force Shapley reference."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "service.cli"]
DEMO_MANIFEST = next((ROOT / "models" / "german-credit").glob("*/manifest.yaml"))

HOUSING = ["rent", "own", "free"]
FEATURES = ["income", "debt_ratio", "housing"]
ROWS = 300
REFERENCE_ROWS = 64
EVALUATION_ROWS = 80


def synthetic_data(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Raw rows (categories as strings) with a binary label and a numeric amount.

    Values are rounded as real data is, so many rows sit exactly on split thresholds.
    """
    rng = np.random.default_rng(seed)
    income = np.round(rng.uniform(10, 150, rows))
    debt_ratio = np.round(rng.uniform(0, 3, rows), 2)
    code = rng.integers(0, len(HOUSING), rows)
    effect = np.array([0.0, 0.9, -0.6])[code]
    score = 0.03 * income - 1.1 * debt_ratio + effect + rng.logistic(size=rows) * 0.7 - 1.2
    amount = 0.05 * income - 2.0 * debt_ratio + 3 * effect + rng.normal(size=rows)
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt_ratio,
            "housing": [HOUSING[c] for c in code],
            "outcome": np.where(score > 0, "good", "bad"),
            "amount": np.round(amount, 3),
        }
    )


def codes(frame: pd.DataFrame) -> np.ndarray:
    """The design matrix a booster sees: numerics, then the housing category's index."""
    return np.column_stack(
        [
            frame["income"].to_numpy(dtype=float),
            frame["debt_ratio"].to_numpy(dtype=float),
            np.array([HOUSING.index(v) for v in frame["housing"]], dtype=float),
        ]
    )


def feature_specs() -> list[dict[str, Any]]:
    return [
        {
            "name": "income",
            "type": "numeric",
            "range": [0, 1000],
            "integer": True,
            "direction": "increase",
            "reason": {"code": "IN01", "statement": "Income insufficient for amount requested"},
        },
        {
            "name": "debt_ratio",
            "type": "numeric",
            "range": [0, 10],
            "direction": "decrease",
            "reason": {"code": "DR01", "statement": "Debt too high relative to income"},
        },
        {
            "name": "housing",
            "type": "categorical",
            "categories": list(HOUSING),
            "reason": {"code": "HO01", "statement": "Housing situation"},
        },
    ]


FORMAT_FILES = {
    "xgboost-json": "model.json",
    "xgboost-ubj": "model.ubj",
    "lightgbm-text": "model.txt",
    "skops": "model.skops",
    "joblib": "model.joblib",
}


def manifest_dict(
    name: str,
    fmt: str,
    *,
    task: str = "binary_classification",
    classes: Sequence[str] = ("bad", "good"),
    favourable: str = "good",
    evaluation: bool = True,
    trusted: bool | None = None,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "description": f"toy {fmt} {task} model",
        "task": task,
        "artifact": {"path": FORMAT_FILES[fmt], "format": fmt},
        "reference_data": {"path": "reference.csv", "description": "toy reference rows"},
        "features": feature_specs(),
    }
    if trusted is not None:
        manifest["artifact"]["trusted"] = trusted
    if task == "binary_classification":
        manifest.update(target="outcome", classes=list(classes), favourable_class=favourable)
    else:
        manifest["target"] = "amount"
    if evaluation:
        manifest["evaluation_data"] = {"path": "evaluation.csv"}
    return manifest


@dataclass
class Candidate:
    """A model version on disk before registration, and the model object behind it."""

    folder: Path
    manifest: dict[str, Any]
    model: Any
    data: pd.DataFrame
    # Raw booster scores of classes[1] (classifiers) or values, on a raw frame.
    raw_margin: Callable[[pd.DataFrame], np.ndarray] = field(repr=False)
    raw_probability: Callable[[pd.DataFrame], np.ndarray] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.yaml"

    def files(self) -> list[Path]:
        names = [self.manifest["artifact"]["path"], self.manifest["reference_data"]["path"]]
        if "evaluation_data" in self.manifest:
            names.append(self.manifest["evaluation_data"]["path"])
        return [self.folder / n for n in names]

    def instances(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        picked = self.data.iloc[list(rows)][FEATURES]
        return [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in picked.to_dict("records")
        ]


def write_candidate(
    folder: Path, manifest: dict[str, Any], data: pd.DataFrame, artifact: bytes | None = None
) -> None:
    """Manifest, reference and evaluation CSVs (and artifact bytes, if given) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    # the data files hold the features and the manifest's target, nothing else
    columns = [f["name"] for f in manifest["features"]] + [manifest["target"]]
    data[columns].iloc[:REFERENCE_ROWS].to_csv(folder / "reference.csv", index=False)
    if "evaluation_data" in manifest:
        data[columns].iloc[-EVALUATION_ROWS:].to_csv(folder / "evaluation.csv", index=False)
    if artifact is not None:
        (folder / manifest["artifact"]["path"]).write_bytes(artifact)


def train_xgboost(
    data: pd.DataFrame, *, regression: bool = False, positive: str = "good", rounds: int = 25
) -> Any:
    import xgboost

    if regression:
        label = data["amount"].to_numpy(dtype=float)
        params = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.3}
    else:
        label = (data["outcome"] == positive).to_numpy(dtype=float)
        params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}
    matrix = xgboost.DMatrix(codes(data), label=label, feature_names=FEATURES)
    return xgboost.train({**params, "seed": 0, "nthread": 1}, matrix, rounds)


def train_lightgbm(
    data: pd.DataFrame, *, regression: bool = False, categorical: bool = False, rounds: int = 25
) -> Any:
    import lightgbm

    if regression:
        label = data["amount"].to_numpy(dtype=float)
        objective = "regression"
    else:
        label = (data["outcome"] == "good").to_numpy(dtype=float)
        objective = "binary"
    dataset = lightgbm.Dataset(
        codes(data),
        label=label,
        feature_name=FEATURES,
        categorical_feature=[2] if categorical else "auto",
    )
    params = {
        "objective": objective,
        "num_leaves": 8,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1,
        "verbose": -1,
        "seed": 0,
        "num_threads": 1,
        "deterministic": True,
    }
    return lightgbm.train(params, dataset, rounds)


def xgboost_candidate(
    folder: Path,
    name: str,
    *,
    fmt: str = "xgboost-json",
    regression: bool = False,
    classes: Sequence[str] = ("bad", "good"),
    data: pd.DataFrame | None = None,
) -> Candidate:
    """An XGBoost booster saved as JSON or UBJ; it scores classes[1]."""
    import xgboost

    data = synthetic_data() if data is None else data
    task = "regression" if regression else "binary_classification"
    booster = train_xgboost(data, regression=regression, positive=classes[1])
    manifest = manifest_dict(name, fmt, task=task, classes=classes)
    write_candidate(folder, manifest, data)
    booster.save_model(str(folder / FORMAT_FILES[fmt]))

    def margin(frame: pd.DataFrame) -> np.ndarray:
        matrix = xgboost.DMatrix(codes(frame), feature_names=FEATURES)
        return np.asarray(booster.predict(matrix, output_margin=True), dtype=float)

    def probability(frame: pd.DataFrame) -> np.ndarray:
        matrix = xgboost.DMatrix(codes(frame), feature_names=FEATURES)
        return np.asarray(booster.predict(matrix), dtype=float)

    return Candidate(folder, manifest, booster, data, margin, None if regression else probability)


def lightgbm_candidate(
    folder: Path,
    name: str,
    *,
    regression: bool = False,
    categorical: bool = False,
    data: pd.DataFrame | None = None,
) -> Candidate:
    """A LightGBM booster saved as text (optionally with native categorical splits)."""
    data = synthetic_data() if data is None else data
    task = "regression" if regression else "binary_classification"
    booster = train_lightgbm(data, regression=regression, categorical=categorical)
    manifest = manifest_dict(name, "lightgbm-text", task=task)
    write_candidate(folder, manifest, data)
    booster.save_model(str(folder / "model.txt"))

    def margin(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(codes(frame), raw_score=True), dtype=float)

    def probability(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(codes(frame)), dtype=float)

    return Candidate(folder, manifest, booster, data, margin, None if regression else probability)


def cli_register(
    candidate: Candidate, models_dir: Path, files: Sequence[Path] | None = None
) -> subprocess.Popen[str]:
    """Start ``xai-service register --json`` for a candidate (returns the running process);
    this worktree's code, run as ``python -m service.cli``."""
    return subprocess.Popen(
        [
            *CLI,
            "register",
            "--json",
            "--manifest",
            str(candidate.manifest_path),
            *[str(p) for p in (files if files is not None else candidate.files())],
            "--models-dir",
            str(models_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def brute_force_shapley(
    predict: Callable[[pd.DataFrame], np.ndarray],
    background: pd.DataFrame,
    instance: pd.Series,
) -> tuple[float, np.ndarray]:
    """Exact interventional Shapley values over the raw columns of ``background``:
    (v(empty), phi), by the shared enumeration in tests/explainers/shapley.py."""
    from tests.explainers.shapley import exact_shapley

    row = pd.DataFrame({name: [instance[name]] for name in background.columns})
    phi, base = exact_shapley(predict, row, background)
    return base, phi


def expected_content_hash(manifest_bytes: bytes, files: dict[str, bytes]) -> str:
    """The documented content hash, computed here independently of the store."""
    import hashlib

    digest = hashlib.sha256()
    entries = [("manifest.yaml", manifest_bytes), *sorted(files.items())]
    for name, data in entries:
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()


def candidate_hash(candidate: Candidate) -> str:
    files = {p.name: p.read_bytes() for p in candidate.files()}
    return expected_content_hash(candidate.manifest_path.read_bytes(), files)


def parse_cli(out: str) -> tuple[str, str, str, dict[str, Any]]:
    """``register --json`` output: (name, version, registered|already registered, report)."""
    import json

    document = json.loads(out)
    state = "registered" if document["created"] else "already registered"
    return document["name"], document["version"], state, document["report"]


def xgboost_native_candidate(folder: Path, name: str) -> Candidate:
    """An XGBoost booster with native categorical splits on housing (no evaluation file)."""
    import xgboost

    data = synthetic_data()
    types = ["q", "q", "c"]
    matrix = xgboost.DMatrix(
        codes(data),
        label=(data["outcome"] == "good").to_numpy(dtype=float),
        feature_names=FEATURES,
        feature_types=types,
        enable_categorical=True,
    )
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "seed": 0, "nthread": 1}, matrix, 20
    )
    manifest = manifest_dict(name, "xgboost-json", evaluation=False)
    write_candidate(folder, manifest, data)
    booster.save_model(str(folder / "model.json"))

    def margin(frame: pd.DataFrame) -> np.ndarray:
        m = xgboost.DMatrix(
            codes(frame), feature_names=FEATURES, feature_types=types, enable_categorical=True
        )
        return np.asarray(booster.predict(m, output_margin=True), dtype=float)

    return Candidate(folder, manifest, booster, data, margin)
