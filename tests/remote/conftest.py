"""A real model server (MLServer) serving the German credit demo pipelines, and a model
repository holding each of them twice: registered locally (skops) and remotely (the
endpoint), so every test can compare the two registrations of the same model."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.registry.loaded import LoadedModel
from service.registry.manifest import parse_manifest
from service.registry.predictors import Predictor
from service.registry.remote.registration import fingerprint_file
from service.registry.store import MANIFEST_FILE, ModelStore, ModelVersion
from service.registry.validation import validate_candidate
from tests.conftest import DEMO_MODELS, ROOT
from tests.remote.modelserver import ModelServer

# A model small enough for exact SHAP (every coalition of 8 features).
SMALL = "german-credit-small"
SMALL_FEATURES = (
    "status_of_existing_checking_account",
    "duration_in_month",
    "credit_history",
    "credit_amount",
    "savings_account_and_bonds",
    "installment_rate_in_percentage_of_disposable_income",
    "housing",
    "age_in_years",
)


def demo_folder(name: str) -> Path:
    return next(p for p in (ROOT / "models" / name).iterdir() if p.is_dir())


def demo_manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((demo_folder(name) / MANIFEST_FILE).read_text())


def remote_manifest(local: dict[str, Any], name: str, url: str, **artifact: Any) -> bytes:
    """The same manifest with the artifact replaced by the endpoint serving the model."""
    remote = {**local, "name": name}
    remote["artifact"] = {
        "format": "remote",
        "protocol": "open-inference-v2",
        "url": url,
        "model": local["name"],
        "output": "probability",
        "output_name": "predict_proba",
        **artifact,
    }
    return yaml.safe_dump(remote, sort_keys=False).encode()


def register(
    store: ModelStore, manifest: bytes, data: dict[str, bytes], scratch: Path
) -> ModelVersion:
    """Register as ``xai-service register`` does: validate (a remote endpoint is scored
    and fingerprinted), then store."""
    folder = scratch / f"candidate-{len(list(scratch.glob('candidate-*')))}"
    folder.mkdir(parents=True)
    (folder / MANIFEST_FILE).write_bytes(manifest)
    for file, content in data.items():
        (folder / file).write_bytes(content)
    validate_candidate(folder, "cli")
    files = dict(data) | fingerprint_file(folder, parse_manifest(manifest))
    version, _ = store.register(manifest, files, "cli")
    return version


def data_files(name: str) -> dict[str, bytes]:
    folder = demo_folder(name)
    return {f: (folder / f).read_bytes() for f in ("reference.csv", "evaluation.csv")}


def small_model() -> tuple[dict[str, Any], Pipeline, dict[str, bytes]]:
    """A logistic regression on 8 of the German credit features (deterministic fit)."""
    manifest = demo_manifest("german-credit-logit")
    features = [f for f in manifest["features"] if f["name"] in SMALL_FEATURES]
    categorical = [f["name"] for f in features if f["type"] != "numeric"]
    numeric = [f["name"] for f in features if f["type"] == "numeric"]
    encode = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=[f["categories"] for f in features if f["type"] != "numeric"]
                ),
                categorical,
            ),
            ("numeric", StandardScaler(), numeric),
        ],
        sparse_threshold=0.0,
    )
    pipeline = Pipeline([("encode", encode), ("logit", LogisticRegression(C=0.5, max_iter=5000))])
    columns = [f["name"] for f in features] + [manifest["target"]]
    files = {
        name: pd.read_csv(io.BytesIO(data))[columns].to_csv(index=False).encode()
        for name, data in data_files("german-credit-logit").items()
    }
    reference = pd.read_csv(demo_folder("german-credit-logit") / "evaluation.csv")
    pipeline.fit(reference[[f["name"] for f in features]], reference[manifest["target"]])
    small = {**manifest, "name": SMALL, "features": features, "metrics": {}}
    small["description"] = "Logistic regression on 8 German credit features (tests)."
    return small, pipeline, files


@pytest.fixture(scope="session")
def pipelines(demo_models: dict[str, LoadedModel]) -> dict[str, Any]:
    """The scikit-learn pipelines served remotely, by name."""
    served = {name: demo_models[name].predictor.model for name in DEMO_MODELS}  # type: ignore[attr-defined]
    served[SMALL] = small_model()[1]
    return served


@pytest.fixture(scope="session")
def mlserver(
    tmp_path_factory: pytest.TempPathFactory, pipelines: dict[str, Any]
) -> Iterator[ModelServer]:
    """MLServer serving the two demo pipelines and the small model."""
    server = ModelServer(tmp_path_factory.mktemp("mlserver"))
    for name, model in pipelines.items():
        server.serve(name, model)
    server.start()
    yield server
    server.stop()


class Opaque(Predictor):
    """A local model seen only through its scores, as a remote one is: explainers take
    the same model-agnostic path (the scores are the real model's)."""

    def __init__(self, inner: Predictor) -> None:
        super().__init__(inner.manifest)
        self.inner = inner

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.inner.margin(frame)

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self.inner.probability(frame)


class Pair:
    """The local and the remote registration of one model."""

    def __init__(self, local: ModelVersion, remote: ModelVersion) -> None:
        self.local_version, self.remote_version = local, remote
        self.local, self.remote = LoadedModel.load(local), LoadedModel.load(remote)


@pytest.fixture(scope="session")
def repository(
    tmp_path_factory: pytest.TempPathFactory, mlserver: ModelServer
) -> tuple[Path, dict[str, Pair]]:
    """A model repository with each served model registered locally and remotely
    (``<name>`` and ``<name>-remote``)."""
    root = tmp_path_factory.mktemp("remote-repo")
    models = root / "models"
    store = ModelStore(models)
    for name in DEMO_MODELS:
        shutil.copytree(demo_folder(name), models / name / demo_folder(name).name)
    small, pipeline, files = small_model()
    local_small = register(
        store,
        yaml.safe_dump({**small, "artifact": {"path": "model.skops", "format": "skops"}}).encode(),
        files | {"model.skops": skops.io.dumps(pipeline)},
        root,
    )
    store.scan()
    pairs = {}
    for name in (*DEMO_MODELS, SMALL):
        manifest = small if name == SMALL else demo_manifest(name)
        remote = register(
            store,
            remote_manifest(manifest, f"{name}-remote", mlserver.url),
            files if name == SMALL else data_files(name),
            root,
        )
        local = local_small if name == SMALL else store.get(name)
        pairs[name] = Pair(local, remote)
    return models, pairs


@pytest.fixture(scope="session")
def pairs(repository: tuple[Path, dict[str, Pair]]) -> dict[str, Pair]:
    return repository[1]
