"""KServe's v1 protocol (``POST /v1/models/{name}:predict``, one JSON object per row),
against a small real server answering with the German credit pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.remote.predictor import RemotePredictor
from service.registry.store import ModelStore
from tests.remote.conftest import data_files, demo_manifest, register, remote_manifest
from tests.remote.stub import StubServer

NAME = "german-credit"


@pytest.fixture(scope="module")
def served(demo_models: dict[str, LoadedModel]) -> Iterator[StubServer]:
    server = StubServer(demo_models[NAME].predictor.model, NAME)  # type: ignore[attr-defined]
    with server.running():
        yield server


@pytest.fixture(scope="module")
def remote(served: StubServer, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root: Path = tmp_path_factory.mktemp("kserve")
    manifest = remote_manifest(
        demo_manifest(NAME), "credit-kserve", served.url, protocol="kserve-v1", output_name=None
    )
    version = register(ModelStore(root / "models"), manifest, data_files(NAME), root)
    return LoadedModel.load(version)


def test_rows_go_out_as_objects_and_predictions_are_identical(
    served: StubServer, remote: LoadedModel, demo_models: dict[str, LoadedModel]
) -> None:
    local = demo_models[NAME]
    rows = local.reference.iloc[:60]
    assert isinstance(remote.predictor, RemotePredictor)
    np.testing.assert_array_equal(
        remote.predictor.probability(rows), local.predictor.probability(rows)
    )
    instance = served.requests[-1]["instances"][0]
    assert list(instance) == local.manifest.feature_names
    assert isinstance(instance["housing"], str) and isinstance(instance["duration_in_month"], int)
    assert remote.predictor.status()["protocol"] == "kserve-v1"


def test_sampling_shap_is_identical(
    remote: LoadedModel, demo_models: dict[str, LoadedModel]
) -> None:
    local = demo_models[NAME]
    rows = local.reference.iloc[:1]
    options = ShapOptions(algorithm="sampling", permutations=8)
    got = ShapExplainer(remote, options).explain(rows, [5])[0]
    expected = ShapExplainer(local, options).explain(rows, [5])[0]
    for a, b in zip(got["attributions"], expected["attributions"], strict=True):
        assert a["feature"] == b["feature"]
        assert a["contribution"] == pytest.approx(b["contribution"], abs=1e-9)
        assert a["std_error"] == pytest.approx(b["std_error"], abs=1e-9)
