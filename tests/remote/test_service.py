"""A remote model through the whole service, as a lender runs it: registered over HTTP,
explained by worker processes, its decisions receipted; then the endpoint's model is
swapped (409, flagged, model_changed on verify) and the model server killed mid-batch
(the job fails with the endpoint's reason, no 500, no hang; resubmitted, it succeeds)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, free_port
from tests.remote.conftest import data_files, demo_folder, demo_manifest, remote_manifest
from tests.remote.modelserver import ModelServer

LOCAL, REMOTE = "german-credit-logit", "credit-remote"
CHANGED = "the model behind the endpoint changed since registration"
# starting MLServer and the service (fixtures) counts against a test's time limit
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def scorer(
    tmp_path_factory: pytest.TempPathFactory, pipelines: dict[str, Any]
) -> Iterator[ModelServer]:
    """A model server of this module's own: its model is swapped and it is killed."""
    server = ModelServer(tmp_path_factory.mktemp("scorer"))
    server.serve(LOCAL, pipelines[LOCAL])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, scorer: ModelServer
) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("service") / "models"
    shutil.copytree(demo_folder(LOCAL), models / LOCAL / demo_folder(LOCAL).name)
    env = {
        "XAI_REMOTE_RETRY_SECONDS": "3",
        "XAI_CHUNK_SIZE": "8",
        "XAI_JOB_TIME_LIMIT": "90",
        "XAI_MAX_WAIT": "300",
    }
    process = ServerProcess(models, env).start(timeout=600)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(service: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120) as client:
        yield client


def upload(manifest: bytes, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "manifest": ("manifest.yaml", manifest),
        "reference": ("reference.csv", files["reference.csv"]),
        "evaluation": ("evaluation.csv", files["evaluation.csv"]),
    }


@pytest.fixture(scope="module")
def registered(http: httpx.Client, scorer: ModelServer) -> dict[str, Any]:
    manifest = remote_manifest(demo_manifest(LOCAL), REMOTE, scorer.url)
    response = http.post("/v1/models", files=upload(manifest, data_files(LOCAL)))
    assert response.status_code == 201, response.text
    return response.json()


def test_registration_fingerprints_the_endpoint(
    http: httpx.Client, scorer: ModelServer, registered: dict[str, Any]
) -> None:
    remote = registered["report"]["remote"]
    assert remote["fingerprint"].startswith("sha256:") and remote["fingerprint_rows"] == 200
    assert remote["orientation_auc"] > 0.8
    again = http.post(
        "/v1/models",
        files=upload(remote_manifest(demo_manifest(LOCAL), REMOTE, scorer.url), data_files(LOCAL)),
    )
    assert again.status_code == 200 and again.json()["version"] == registered["version"]

    detail = http.get(f"/v1/models/{REMOTE}").json()
    assert detail["artifact_format"] == "remote" and detail["shap_algorithm"] == "sampling"
    assert detail["remote"]["state"] == "ok"
    assert detail["remote"]["fingerprint"] == remote["fingerprint"]
    assert detail["remote"]["url"] == scorer.url


def test_an_unreachable_or_misbehaving_endpoint_is_refused(
    http: httpx.Client, scorer: ModelServer
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    manifest = remote_manifest(demo_manifest(LOCAL), "credit-nowhere", nowhere)
    started = time.monotonic()
    response = http.post("/v1/models", files=upload(manifest, data_files(LOCAL)))
    assert response.status_code == 422, response.text
    message = str(response.json()["detail"])
    assert nowhere in message and "connection failed" in message
    assert time.monotonic() - started < 60
    # MLServer's scikit-learn runtime answers class labels unless predict_proba is asked for
    labels = remote_manifest(demo_manifest(LOCAL), "credit-labels", scorer.url, output_name=None)
    response = http.post("/v1/models", files=upload(labels, data_files(LOCAL)))
    assert response.status_code == 422 and "output_name" in str(response.json()["detail"])
    # classes listed in the other order than the endpoint's columns
    inverted = demo_manifest(LOCAL) | {"classes": ["good", "bad"]}
    response = http.post(
        "/v1/models",
        files=upload(remote_manifest(inverted, "credit-inverted", scorer.url), data_files(LOCAL)),
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["manifest", "classes"]
    assert "other class order" in response.json()["detail"][0]["msg"]
    assert sorted(m["name"] for m in http.get("/v1/models").json()["models"]) == [REMOTE, LOCAL]


def test_predictions_and_decisions_equal_the_local_registration(
    http: httpx.Client, registered: dict[str, Any], applicants: list[dict[str, Any]]
) -> None:
    body = {"instances": applicants[:40]}
    local = http.post(f"/v1/models/{LOCAL}/predict", json=body).json()
    remote = http.post(f"/v1/models/{REMOTE}/predict", json=body).json()
    assert remote["predictions"] == local["predictions"]

    for applicant in applicants[:6]:
        request = {"applicant": applicant, "options": {"recourse": {"enabled": False}}}
        here = http.post(f"/v1/models/{LOCAL}/adverse-action", json=request).json()
        there = http.post(f"/v1/models/{REMOTE}/adverse-action", json=request).json()
        assert (there["decision"], there["score"]) == (here["decision"], here["score"])
        if here["reasons"]:
            assert there["reasons"][0]["code"] == here["reasons"][0]["code"]
        receipt = http.get(f"/v1/receipts/{there['receipt_id']}").json()
        assert receipt["fingerprint"] == registered["report"]["remote"]["fingerprint"]
        assert "fingerprint" not in http.get(f"/v1/receipts/{here['receipt_id']}").json()
    verified = http.post(f"/v1/receipts/{there['receipt_id']}/verify").json()
    assert verified["match"] is True and verified["model_changed"] is False
    assert verified["replayed_with"]["fingerprint"] == receipt["fingerprint"]

    # batch notices: a batch job over the remote model, as notices
    batch = {
        "applicants": applicants[:12],
        "application_ids": [f"R-{i}" for i in range(12)],
        "options": {"recourse": {"enabled": False}},
    }
    submitted = http.post(f"/v1/models/{REMOTE}/adverse-action/batch", json=batch)
    assert submitted.status_code == 202, submitted.text
    status = _finished(http, f"/v1/jobs/{submitted.json()['job_id']}")
    assert status["status"] == "succeeded", status
    decisions = status["result"]["results"]
    denied = [d for d in decisions if d["decision"] == "denied"]
    assert len(decisions) == 12 and denied
    notices = http.get(f"/v1/jobs/{submitted.json()['job_id']}/result?format=notices").text
    assert notices.count("\f") == len(denied) - 1
    assert all(d["receipt_id"] in notices for d in denied)


def test_a_swapped_model_is_refused_and_flagged(
    http: httpx.Client,
    scorer: ModelServer,
    pipelines: dict[str, Any],
    registered: dict[str, Any],
    applicants: list[dict[str, Any]],
) -> None:
    applicant = applicants[4]
    decided = http.post(
        f"/v1/models/{REMOTE}/adverse-action",
        json={"applicant": applicant, "options": {"recourse": {"enabled": False}}},
    ).json()
    cached = {"instances": applicants[:3]}
    assert http.post(f"/v1/models/{REMOTE}/predict", json=cached).status_code == 200

    scorer.serve(LOCAL, pipelines["german-credit"])  # redeployed under the same name
    scorer.reload(LOCAL)
    try:
        fresh = http.post(f"/v1/models/{REMOTE}/predict", json={"instances": applicants[5:7]})
        assert fresh.status_code == 409 and CHANGED in fresh.json()["detail"], fresh.text
        # a cached answer of the old model is not served either
        repeated = http.post(f"/v1/models/{REMOTE}/predict", json=cached)
        assert repeated.status_code == 409, repeated.text
        detail = http.get(f"/v1/models/{REMOTE}").json()["remote"]
        assert detail["state"] == "changed" and CHANGED in detail["detail"]
        verified = http.post(f"/v1/receipts/{decided['receipt_id']}/verify")
        assert verified.status_code == 200, verified.text
        assert verified.json()["model_changed"] is True and verified.json()["match"] is False
        # the local registration is untouched
        assert http.post(f"/v1/models/{LOCAL}/predict", json=cached).status_code == 200
    finally:
        scorer.serve(LOCAL, pipelines[LOCAL])
        scorer.reload(LOCAL)
    assert http.post(f"/v1/models/{REMOTE}/predict", json=cached).status_code == 200
    assert http.get(f"/v1/models/{REMOTE}").json()["remote"]["state"] == "ok"
    verified = http.post(f"/v1/receipts/{decided['receipt_id']}/verify").json()
    assert verified["match"] is True and verified["model_changed"] is False


def test_a_killed_model_server_fails_the_batch_then_it_succeeds(
    http: httpx.Client,
    scorer: ModelServer,
    registered: dict[str, Any],
    applicants: list[dict[str, Any]],
) -> None:
    body = {
        "instances": applicants[100:148],
        "methods": ["shap"],
        "options": {"shap": {"permutations": 8}, "seed": 3},
        "wait": 0,
    }
    accepted = http.post(f"/v1/models/{REMOTE}/explain", json=body)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["location"]
    deadline = time.monotonic() + 120
    while http.get(job).json()["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    scorer.kill()  # mid-batch: some chunks done, others not
    try:
        status = _finished(http, job)
        assert status["status"] == "failed", status
        error = status["error"]
        assert error["status_code"] == 503 and error["code"] == "remote_unavailable"
        # the endpoint and what went wrong (refused, or a request in flight cut off)
        assert error["message"].startswith(f"model endpoint {scorer.url} ")
        assert any(
            reason in error["message"]
            for reason in ("connection failed", "timed out", "RemoteProtocolError", "ReadError")
        ), error
        # a waiting request answers 503 with the reason (the failed job's running chunks
        # were cancelled, which replaced their worker processes: those start first)
        waiting = http.post(
            f"/v1/models/{REMOTE}/explain",
            json={"instances": applicants[9:10], "methods": ["lime"], "wait": 300},
            timeout=400,
        )
        assert waiting.status_code == 503 and scorer.url in waiting.json()["detail"]
        assert waiting.headers["retry-after"]
        detail = http.get(f"/v1/models/{REMOTE}")
        assert detail.status_code == 200 and detail.json()["remote"]["state"] == "unreachable"
    finally:
        scorer.start()
    resubmitted = http.post(f"/v1/models/{REMOTE}/explain", json=body)
    assert resubmitted.status_code == 202
    status = _finished(http, resubmitted.json()["location"])
    assert status["status"] == "succeeded", status
    assert len(status["result"]["results"]) == 48


def _finished(http: httpx.Client, job: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(job).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job} did not finish in {timeout} s")
