"""Registration over HTTP against a real gateway process with its own model repository."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from sklearn.preprocessing import FunctionTransformer

from service.registry.loaded import read_rows
from service.registry.manifest import parse_manifest
from service.registry.store import ModelStore
from tests.conftest import ServerProcess

from .malformed import (
    aborting_lightgbm_candidate,
    corrupted_tree_candidate,
    skops_declared_as_xgboost,
)
from .test_loading import log_income, pipeline, qualified, sklearn_candidate
from .toy import (
    REFERENCE_ROWS,
    ROOT,
    Candidate,
    brute_force_shapley,
    candidate_hash,
    manifest_dict,
    synthetic_data,
    write_candidate,
    xgboost_candidate,
    xgboost_native_candidate,
)

ROWS = [120, 180, 240]
ROW = {"income": 80, "debt_ratio": 1.2, "housing": "own"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("http") / "models"
    models.mkdir()
    process = ServerProcess(models, env={"XAI_WORKERS": "1"}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def xgb(tmp_path_factory: pytest.TempPathFactory) -> Candidate:
    return xgboost_candidate(tmp_path_factory.mktemp("xgb"), "toy-http")


@pytest.fixture(scope="module")
def registered(http: httpx.Client, xgb: Candidate) -> httpx.Response:
    """The first registration of the XGBoost JSON model (the other tests rely on it)."""
    return http.post("/v1/models", files=uploads(xgb))


def uploads(candidate: Candidate, **override: bytes | None) -> dict[str, Any]:
    """Multipart fields for a candidate; ``override`` replaces (None: drops) a field."""
    folder, manifest = candidate.folder, candidate.manifest
    fields: dict[str, Any] = {
        "manifest": ("manifest.yaml", candidate.manifest_path.read_bytes()),
        "artifact": (
            manifest["artifact"]["path"],
            (folder / manifest["artifact"]["path"]).read_bytes(),
        ),
        "reference": ("reference.csv", (folder / "reference.csv").read_bytes()),
    }
    if "evaluation_data" in manifest:
        fields["evaluation"] = ("evaluation.csv", (folder / "evaluation.csv").read_bytes())
    for field, data in override.items():
        if data is None:
            fields.pop(field, None)
        else:
            fields[field] = (fields.get(field, (field,))[0], data)
    return fields


def detail(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    body = response.json()["detail"]
    assert isinstance(body, list) and body
    return body


def test_registering_a_booster_makes_it_listed_and_explainable(
    http: httpx.Client, xgb: Candidate, server: ServerProcess, registered: httpx.Response
) -> None:
    response = registered
    assert response.status_code == 201, response.text
    body = response.json()
    digest = candidate_hash(xgb)
    assert body["name"] == "toy-http"
    assert (body["version"], body["content_hash"], body["created"]) == (digest[:16], digest, True)
    report = body["report"]
    assert [(d["file"], d["rows"]) for d in report["data"]] == [
        ("reference.csv", REFERENCE_ROWS),
        ("evaluation.csv", 80),
    ]
    assert 0.7 < report["evaluation"]["roc_auc"] <= 1
    assert report["orientation"] == {
        "positive_class": "good",
        "declared_by": "classes[1]",
        "favourable_class": "good",
        "checked_on": "evaluation.csv",
    }
    assert report["shap"]["log_odds"]["algorithm"] == "tree"
    assert report["methods"] == ["anchor", "counterfactual", "lime", "shap"]

    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert listed["toy-http"]["latest_version"] == digest[:16]
    (version,) = listed["toy-http"]["versions"]
    assert (version["version"], version["source"]) == (digest[:16], "http")

    described = http.get("/v1/models/toy-http").json()
    assert described["artifact_format"] == "xgboost-json"
    assert described["shap_algorithm"] == "tree"
    assert described["reference_rows"] == REFERENCE_ROWS
    assert [f["name"] for f in described["features"]] == ["income", "debt_ratio", "housing"]

    instances = xgb.instances(ROWS)
    response = http.post(
        "/v1/models/toy-http/explain", json={"instances": instances, "methods": ["shap"]}
    )
    assert response.status_code == 200, response.text
    explained = response.json()
    assert explained["version"] == digest[:16]
    reference = read_rows(
        xgb.folder / "reference.csv", parse_manifest(xgb.manifest_path.read_bytes())
    )
    for row, result in zip(ROWS, explained["results"], strict=True):
        raw = xgb.data.iloc[[row]][["income", "debt_ratio", "housing"]]
        assert result["prediction"]["probability"] == pytest.approx(
            xgb.raw_probability(raw)[0], abs=1e-6
        )
        shap = result["explanations"]["shap"]
        assert shap["evidence"]["algorithm"] == "tree"
        assert shap["output_space"] == "log_odds"
        assert shap["evidence"]["additivity_error"] < 1e-6
        assert shap["reference"] == {
            "rows": REFERENCE_ROWS,
            "source": "toy reference rows",
            "selection": f"all {REFERENCE_ROWS} reference rows",
        }
        base, phi = brute_force_shapley(xgb.raw_margin, reference, raw.iloc[0])
        assert shap["base_value"] == pytest.approx(base, abs=1e-6)
        got = {a["feature"]: a["contribution"] for a in shap["attributions"]}
        np.testing.assert_allclose([got[n] for n in reference.columns], phi, rtol=0, atol=1e-6)
    # the uploaded files are not left in the staging area
    incoming = Path(server.env["XAI_MODELS_DIR"]) / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_registering_the_same_again_is_200_not_created(
    http: httpx.Client, xgb: Candidate, registered: httpx.Response
) -> None:
    assert registered.status_code == 201
    again = http.post("/v1/models", files=uploads(xgb))
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["version"] == candidate_hash(xgb)[:16]
    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert len(listed["toy-http"]["versions"]) == 1


def test_a_joblib_manifest_is_refused_at_the_format(http: httpx.Client, tmp_path: Path) -> None:
    spec = manifest_dict("toy-pickle", "joblib", trusted=True, evaluation=False)
    write_candidate(tmp_path, spec, synthetic_data(), artifact=b"\x80\x04not really a pickle")
    candidate = Candidate(tmp_path, spec, None, synthetic_data(), lambda f: f)
    issues = detail(http.post("/v1/models", files=uploads(candidate)))
    assert [i["loc"] for i in issues] == [["manifest", "artifact", "format"]]
    assert "'joblib' cannot be uploaded over HTTP" in issues[0]["msg"]


def test_a_corrupted_artifact_is_refused(http: httpx.Client, tmp_path: Path) -> None:
    spec = manifest_dict("toy-corrupt", "skops", evaluation=False)
    noise = np.random.default_rng(3).bytes(2048)
    write_candidate(tmp_path, spec, synthetic_data(), artifact=noise)
    candidate = Candidate(tmp_path, spec, None, synthetic_data(), lambda f: f)
    issues = detail(http.post("/v1/models", files=uploads(candidate)))
    assert [i["loc"] for i in issues] == [["body", "artifact"]]
    assert "artifact could not be loaded as skops" in issues[0]["msg"]


def test_a_skops_file_with_an_untrusted_type_is_refused(http: httpx.Client, tmp_path: Path) -> None:
    sklearn_candidate(tmp_path, pipeline(FunctionTransformer(func=log_income)), name="toy-unsafe")
    candidate = Candidate(
        tmp_path,
        yaml.safe_load((tmp_path / "manifest.yaml").read_text()),
        None,
        synthetic_data(),
        lambda f: f,
    )
    issues = detail(http.post("/v1/models", files=uploads(candidate)))
    assert [i["loc"] for i in issues] == [["body", "artifact"]]
    assert issues[0]["msg"] == f"skops artifact holds untrusted types: {[qualified(log_income)]}"


def test_a_missing_reference_field_is_refused(http: httpx.Client, xgb: Candidate) -> None:
    issues = detail(http.post("/v1/models", files=uploads(xgb, reference=None)))
    assert [(i["loc"], i["type"]) for i in issues] == [(["body", "reference"], "missing")]


def test_upload_fields_must_match_the_manifest(
    http: httpx.Client, xgb: Candidate, tmp_path: Path
) -> None:
    issues = detail(http.post("/v1/models", files=uploads(xgb, evaluation=None)))
    assert [(i["loc"], i["type"]) for i in issues] == [(["body", "evaluation"], "missing")]
    spec = dict(xgb.manifest)
    spec.pop("evaluation_data")
    manifest = yaml.safe_dump(spec).encode()
    issues = detail(http.post("/v1/models", files=uploads(xgb, manifest=manifest)))
    assert [(i["loc"], i["type"]) for i in issues] == [(["body", "evaluation"], "extra_forbidden")]


def test_an_invalid_manifest_is_refused_at_the_field(http: httpx.Client, xgb: Candidate) -> None:
    spec = yaml.safe_load(xgb.manifest_path.read_text())
    del spec["features"][2]["categories"]
    spec["decision_threshold"] = 1.5
    issues = detail(
        http.post("/v1/models", files=uploads(xgb, manifest=yaml.safe_dump(spec).encode()))
    )
    assert sorted(tuple(map(str, i["loc"])) for i in issues) == [
        ("manifest", "decision_threshold"),
        ("manifest", "features", "2"),
    ]
    issues = detail(http.post("/v1/models", files=uploads(xgb, manifest=b"name: [")))
    assert issues[0]["loc"] == ["manifest"]


def test_bad_data_files_are_refused_with_file_row_and_column(
    http: httpx.Client, xgb: Candidate
) -> None:
    """Labels that are not the declared classes (classes '0'/'1' for good/bad labels) and a
    value outside its declared range: each located by upload, row and column."""
    spec = yaml.safe_load(xgb.manifest_path.read_text())
    spec.update(name="toy-http-baddata", classes=["0", "1"], favourable_class="1")
    evaluation = (xgb.folder / "evaluation.csv").read_text().splitlines()
    header = evaluation[0].split(",")
    fifth = evaluation[5].split(",")
    fifth[header.index("income")] = "5000"
    evaluation[5] = ",".join(fifth)
    issues = detail(
        http.post(
            "/v1/models",
            files=uploads(
                xgb,
                manifest=yaml.safe_dump(spec).encode(),
                evaluation="\n".join(evaluation).encode() + b"\n",
            ),
        )
    )
    located = [(i["loc"], i["msg"].split(": ")[0]) for i in issues]
    assert located == [
        (["body", "reference", 1, "outcome"], "reference.csv row 1, column 'outcome'"),
        (["body", "evaluation", 5, "income"], "evaluation.csv row 5, column 'income'"),
        (["body", "evaluation", 1, "outcome"], "evaluation.csv row 1, column 'outcome'"),
    ]
    assert "'5000' is outside the declared range [0, 1000]" in issues[1]["msg"]
    assert "is not one of the declared classes ('0', '1')" in issues[2]["msg"]
    assert http.get("/v1/models/toy-http-baddata").status_code == 404


def test_refused_uploads_leave_nothing_behind(
    http: httpx.Client, server: ServerProcess, registered: httpx.Response
) -> None:
    models = Path(server.env["XAI_MODELS_DIR"])
    names = sorted(m["name"] for m in http.get("/v1/models").json()["models"])
    assert names == ["toy-http"]
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["toy-http"]
    incoming = models / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


NATIVE_BUG = (
    "BUG: shap 0.51 raises NotImplementedError in shap_values for XGBoost categorical "
    "splits and ShapExplainer._verified does not catch it: describe/explain answer 500"
)


def test_a_booster_with_categorical_splits_is_explained_exactly(
    http: httpx.Client, tmp_path: Path
) -> None:
    native = xgboost_native_candidate(tmp_path / "native", "toy-http-native")
    response = http.post("/v1/models", files=uploads(native))
    assert response.status_code == 201, response.text  # validation only predicts
    described = http.get("/v1/models/toy-http-native")
    assert described.status_code == 200, described.text
    detail = described.json()
    assert detail["shap_algorithm"] == "tree"
    assert detail["shap"]["log_odds"]["algorithm"] == "tree"
    assert detail["shap"]["log_odds"]["fallback_reason"] is None
    assert detail["shap"]["probability"]["algorithm"] == "exact"
    response = http.post(
        "/v1/models/toy-http-native/explain", json={"instances": native.instances(ROWS[:1])}
    )
    assert response.status_code == 200, response.text
    shap = response.json()["results"][0]["explanations"]["shap"]
    assert shap["evidence"]["algorithm"] == "tree"
    assert shap["evidence"]["implementation"] == "native"
    assert shap["evidence"]["additivity_error"] < 2e-5


def test_one_unexplainable_model_does_not_keep_the_service_from_ready(
    tmp_path: Path, xgb: Candidate
) -> None:
    models = tmp_path / "models"
    native = xgboost_native_candidate(tmp_path / "native", "toy-native")
    for candidate in (xgb, native):
        ModelStore(models).register(
            candidate.manifest_path.read_bytes(),
            {p.name: p.read_bytes() for p in candidate.files()},
            "cli",
        )
    server = ServerProcess(models, env={"XAI_WORKERS": "1"})
    with open(server.log, "wb") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=server.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, state = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.process.poll() is None:
            try:
                ready = httpx.get(f"{server.url}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.25)
                continue
            state = ready.json()
            if ready.status_code == 200 or "warm-up failed" in str(state.get("detail")):
                break
            time.sleep(0.25)
        assert state is not None and state.get("status") == "ready", state
        response = httpx.post(
            f"{server.url}/v1/models/toy-http/predict",
            json={"instances": xgb.instances(ROWS[:1])},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    finally:
        server.stop()


def test_a_huge_integer_is_a_422(http: httpx.Client, registered: httpx.Response) -> None:
    body = '{"instances": [{"income": 1' + "0" * 400 + ', "debt_ratio": 1, "housing": "own"}]}'
    response = http.post(
        "/v1/models/toy-http/predict", content=body, headers={"content-type": "application/json"}
    )
    issues = detail(response)
    assert issues[0]["loc"] == ["body", "instances", 0, "income"]


def _no_server_paths(text: str, server: ServerProcess) -> None:
    models = str(Path(server.env["XAI_MODELS_DIR"]).resolve())
    for leak in (models, ".incoming", "/tmp/", str(ROOT), "site-packages", "Stack trace"):
        assert leak not in text, f"{leak!r} leaked into {text!r}"


def test_an_artifact_that_crashes_its_loader_is_refused_and_the_service_keeps_serving(
    http: httpx.Client, server: ServerProcess, registered: httpx.Response, tmp_path: Path
) -> None:
    aborting = aborting_lightgbm_candidate(tmp_path, "toy-http-abort")
    response = http.post("/v1/models", files=uploads(aborting))
    [issue] = detail(response)
    assert issue["loc"] == ["body", "artifact"]
    assert "crashed the process" in issue["msg"] and "SIGABRT" in issue["msg"]
    _no_server_paths(response.text, server)
    served = http.post("/v1/models/toy-http/predict", json={"instances": [ROW]})
    assert served.status_code == 200, served.text
    assert "toy-http-abort" not in {m["name"] for m in http.get("/v1/models").json()["models"]}


def test_a_skops_tree_pointing_outside_itself_is_refused(
    http: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    response = http.post("/v1/models", files=uploads(corrupted_tree_candidate(tmp_path)))
    [issue] = detail(response)
    assert issue["loc"] == ["body", "artifact"]
    assert "node 0 points to children outside the tree" in issue["msg"]
    _no_server_paths(response.text, server)


def test_a_file_in_another_format_is_named_without_server_paths(
    http: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    response = http.post("/v1/models", files=uploads(skops_declared_as_xgboost(tmp_path)))
    [issue] = detail(response)
    assert issue["msg"] == (
        "artifact could not be loaded as xgboost-json: not an XGBoost JSON model "
        "(the file looks like a skops/zip archive)"
    )
    _no_server_paths(response.text, server)


def test_deep_and_huge_manifests_are_422(http: httpx.Client, xgb: Candidate) -> None:
    deep = b"name: " + b"[" * 900 + b"]" * 900
    [issue] = detail(http.post("/v1/models", files=uploads(xgb, manifest=deep)))
    assert issue["loc"] == ["manifest"] and "nested deeper than" in issue["msg"]
    huge = xgb.manifest_path.read_bytes() + b"#" * (2 << 20)
    [issue] = detail(http.post("/v1/models", files=uploads(xgb, manifest=huge)))
    assert issue["loc"] == ["body", "manifest"] and "at most 1048576" in issue["msg"]
    escaped = xgb.manifest_path.read_bytes().replace(b"toy-http", b'"toy-\\udc80"')
    [issue] = detail(http.post("/v1/models", files=uploads(xgb, manifest=escaped)))
    assert issue["loc"][0] == "manifest"


@pytest.fixture(scope="module")
def regression(http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    candidate = xgboost_candidate(
        tmp_path_factory.mktemp("regression"), "toy-http-reg", regression=True
    )
    response = http.post("/v1/models", files=uploads(candidate))
    assert response.status_code == 201, response.text
    return candidate.name


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("explain", {"methods": ["lime"], "options": {"lime": {"output": "probability"}}},
         ["body", "options", "lime", "output"]),
        ("explain", {"methods": ["shap"], "options": {"shap": {"output": "log_odds"}}},
         ["body", "options", "shap", "output"]),
        ("explain", {"methods": ["anchor"]}, ["body", "methods"]),
        ("explain", {"methods": ["counterfactual"]}, ["body", "methods"]),
        ("adverse-action", {}, ["path", "name"]),
        ("global", {"methods": ["pdp"], "options": {"pdp": {"output": "log_odds"}}},
         ["body", "options", "pdp", "output"]),
        ("global", {"methods": ["shap_importance"],
                    "options": {"shap_importance": {"output": "probability"}}},
         ["body", "options", "shap_importance", "output"]),
    ],
)  # fmt: skip
def test_options_a_regression_cannot_serve_are_refused_before_a_job(
    http: httpx.Client, regression: str, path: str, body: dict[str, Any], loc: list[Any]
) -> None:
    """With wait 0 a job that were queued would answer 202 and fail later."""
    if path == "explain":
        body = {**body, "instances": [ROW]}
    elif path == "adverse-action":
        body = {"applicant": ROW}
    response = http.post(f"/v1/models/{regression}/{path}", json={**body, "wait": 0})
    [issue] = detail(response)
    assert issue["loc"] == loc, issue


def test_a_version_query_cannot_swap_in_another_model(
    http: httpx.Client, xgb: Candidate, registered: httpx.Response, tmp_path: Path
) -> None:
    """Runs last: on failure it leaves the server's store poisoned."""
    other = xgboost_candidate(tmp_path / "other", "toy-http-other", regression=True)
    assert http.post("/v1/models", files=uploads(other)).status_code == 201
    other_id = candidate_hash(other)[:16]
    response = http.get("/v1/models/toy-http", params={"version": f"../toy-http-other/{other_id}"})
    assert response.status_code == 404
    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert [v["version"] for v in listed["toy-http"]["versions"]] == [candidate_hash(xgb)[:16]]
    assert http.get("/v1/models/toy-http").json()["task"] == "binary_classification"
