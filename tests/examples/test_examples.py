"""The example manifests (examples/xgboost, examples/lightgbm), trained by their own scripts
and used end to end against a real gateway process: register over HTTP -> predict ->
explain -> adverse-action; the class order inverted is refused; a version registered from
the CLI is served by the running service without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, ServerProcess

EXAMPLES = {
    "xgboost": {"artifact": "model.json", "scores": "bad"},
    "lightgbm": {"artifact": "model.txt", "scores": "good"},
}
CLI = [sys.executable, "-m", "service.cli"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both examples trained by their scripts (concurrently), each in its own folder."""
    base = tmp_path_factory.mktemp("examples")
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name / "train.py"), "--out", str(base / name)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in EXAMPLES
    }
    for name, run in runs.items():
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, f"{name}: {err}"
    return {name: base / name for name in EXAMPLES}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("served") / "models"
    models.mkdir()
    process = ServerProcess(models, env={"XAI_WORKERS": "1"}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def upload(folder: Path, artifact: str, manifest: bytes | None = None) -> dict[str, Any]:
    return {
        "manifest": ("manifest.yaml", manifest or (folder / "manifest.yaml").read_bytes()),
        "artifact": (artifact, (folder / artifact).read_bytes()),
        "reference": ("reference.csv", (folder / "reference.csv").read_bytes()),
        "evaluation": ("evaluation.csv", (folder / "evaluation.csv").read_bytes()),
    }


def own_probability(example: str, folder: Path, frame: pd.DataFrame) -> np.ndarray:
    """P(good) by the booster itself, fed as its train.py fed it."""
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    columns = []
    for feature in manifest["features"]:
        values = frame[feature["name"]]
        if "categories" in feature:
            values = values.map({c: i for i, c in enumerate(feature["categories"])})
        columns.append(values.to_numpy(dtype=float))
    design = np.column_stack(columns)
    if example == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(folder / "model.json"))
        names = [f["name"] for f in manifest["features"]]
        return 1 - booster.predict(xgboost.DMatrix(design, feature_names=names))  # P(bad)
    import lightgbm

    return np.asarray(lightgbm.Booster(model_file=str(folder / "model.txt")).predict(design))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame.to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_an_example_registers_predicts_explains_and_decides_over_http(
    example: str, trained: dict[str, Path], http: httpx.Client
) -> None:
    folder, spec = trained[example], EXAMPLES[example]
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    name = manifest["name"]
    response = http.post("/v1/models", files=upload(folder, spec["artifact"]))
    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert report["orientation"]["positive_class"] == spec["scores"]
    assert report["orientation"]["checked_on"] == "evaluation.csv"
    evaluation = pd.read_csv(folder / "evaluation.csv")
    assert report["evaluation"]["rows"] == len(evaluation) == 300
    assert report["evaluation"]["roc_auc"] > 0.7
    assert report["evaluation"]["base_rate"] == pytest.approx(
        (evaluation["creditability"] == "good").mean()
    )
    assert set(report["shap"]) == {"log_odds", "probability"}
    assert "counterfactual" in report["methods"] and "shap" in report["methods"]

    features = evaluation.drop(columns="creditability")
    own = own_probability(example, folder, features)
    predicted = http.post(f"/v1/models/{name}/predict", json={"instances": records(features)})
    assert predicted.status_code == 200, predicted.text
    results = predicted.json()["predictions"]
    probabilities = np.array([r["probability"] for r in results])
    np.testing.assert_allclose(probabilities, own, rtol=0, atol=1e-6)
    assert [r["label"] for r in results] == ["good" if p >= 0.5 else "bad" for p in own]

    worst = int(np.argmin(own))
    applicant = records(features.iloc[[worst]])[0]
    explained = http.post(
        f"/v1/models/{name}/explain", json={"instances": [applicant], "methods": ["shap"]}
    )
    assert explained.status_code == 200, explained.text
    shap = explained.json()["results"][0]["explanations"]["shap"]
    assert shap["evidence"]["algorithm"] == report["shap"]["log_odds"]["algorithm"]
    assert shap["evidence"]["additivity_error"] < 1e-6
    assert shap["evidence"]["model_output"] == pytest.approx(
        np.log(own[worst] / (1 - own[worst])), abs=1e-5
    )

    decided = http.post(f"/v1/models/{name}/adverse-action", json={"applicant": applicant})
    assert decided.status_code == 200, decided.text
    decision = decided.json()
    assert decision["decision"] == "denied"
    assert decision["score"] == pytest.approx(own[worst], abs=1e-6)
    codes = {f["reason"]["code"] for f in manifest["features"] if "reason" in f}
    codes |= {
        f[k]["code"]
        for f in manifest["features"]
        for k in ("reason_if_higher", "reason_if_lower")
        if k in f
    }
    assert decision["reasons"] and all(r["code"] in codes for r in decision["reasons"])
    assert all(r["feature"] != "age_in_years" for r in decision["reasons"])


def test_the_example_with_its_class_order_inverted_is_refused(
    trained: dict[str, Path], http: httpx.Client
) -> None:
    folder = trained["xgboost"]
    text = (folder / "manifest.yaml").read_text()
    inverted = text.replace("positive_class: bad", "positive_class: good").replace(
        "name: german-credit-xgboost", "name: german-credit-xgboost-inverted"
    )
    assert inverted != text
    response = http.post("/v1/models", files=upload(folder, "model.json", inverted.encode()))
    assert response.status_code == 422, response.text
    (issue,) = response.json()["detail"]
    assert issue["loc"] == ["manifest", "artifact", "positive_class"]
    assert "Likely cause: inverted class order" in issue["msg"]
    assert issue["msg"].endswith("set artifact.positive_class: bad.")
    assert http.get("/v1/models/german-credit-xgboost-inverted").status_code == 404


def test_a_version_registered_from_the_cli_is_served_without_a_restart(
    trained: dict[str, Path], http: httpx.Client, server: ServerProcess
) -> None:
    """A new model (found when a request names it) and a new version of a served model (found
    by the gateway's periodic rescan) are both served within seconds."""
    folder = trained["lightgbm"]
    models_dir = server.env["XAI_MODELS_DIR"]
    base = (folder / "manifest.yaml").read_text()
    applicant = records(pd.read_csv(folder / "evaluation.csv").drop(columns="creditability"))[0]
    for model, description in [("lgb-from-cli", "first"), ("lgb-from-cli", "second")]:
        text = base.replace("name: german-credit-lightgbm", f"name: {model}").replace(
            "description: LightGBM", f"description: {description} LightGBM"
        )
        manifest = folder / f"{description}.yaml"
        manifest.write_text(text)
        files = [str(folder / n) for n in ("model.txt", "reference.csv", "evaluation.csv")]
        run = subprocess.run(
            [
                *CLI,
                "register",
                "--json",
                "--manifest",
                str(manifest),
                *files,
                "--models-dir",
                models_dir,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        version = json.loads(run.stdout)["version"]
        registered = time.monotonic()
        latest = None
        while time.monotonic() - registered < 10:
            described = http.get(f"/v1/models/{model}")
            latest = (
                described.json().get("latest_version") if described.status_code == 200 else None
            )
            if latest == version:
                break
            time.sleep(0.2)
        assert latest == version, f"{model} {description}: not served after 10 s"
        predicted = http.post(
            f"/v1/models/{model}/predict",
            params={"version": version},
            json={"instances": [applicant]},
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["version"] == version
    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert len(listed["lgb-from-cli"]["versions"]) == 2
