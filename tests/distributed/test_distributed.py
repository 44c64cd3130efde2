"""Distributed mode over HTTP: Celery workers on a real Redis, as compose deploys it."""

from __future__ import annotations

import concurrent.futures
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from tests.distributed.conftest import Cluster
from tests.gateway.test_api import metric, poll

SLOW = {"shap": {"algorithm": "sampling", "permutations": 2048, "background_rows": 200}}


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> httpx.Client:
    client = httpx.Client(base_url=cluster.gateway.url, timeout=60)
    # Workers are up when a request completes through them.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        response = client.get("/v1/models/german-credit")
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    return client


def test_explain_through_the_queue_matches_embedded_bytes(
    http: httpx.Client, client: httpx.Client, applicant: dict[str, Any]
) -> None:
    request = {"instances": [applicant], "methods": ["shap"], "wait": 30}
    first = http.post("/v1/models/german-credit/explain", json=request)
    again = http.post("/v1/models/german-credit/explain", json=request)
    assert (first.status_code, first.headers["x-cache"]) == (200, "miss")
    assert again.headers["x-cache"] == "hit" and again.content == first.content
    shap = first.json()["results"][0]["explanations"]["shap"]
    assert shap["evidence"]["algorithm"] == "tree"
    assert shap["evidence"]["additivity_error"] < 1e-6
    embedded = client.post("/v1/models/german-credit/explain", json=request)
    assert embedded.content == first.content


def test_stochastic_methods_give_identical_bytes_on_any_worker(
    http: httpx.Client, client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    """Every seeded method: a Celery worker and an embedded worker give the same bytes."""
    request = {
        "instances": applicants[70:73],
        "methods": ["shap", "lime", "anchor", "counterfactual"],
        "wait": 90,
        "options": {
            "shap": {"algorithm": "sampling"},
            "lime": {"samples": 1000},
            "counterfactual": {"time_budget": 60},
        },
    }
    distributed = http.post("/v1/models/german-credit/explain", json=request)
    embedded = client.post("/v1/models/german-credit/explain", json=request)
    assert distributed.status_code == 200 and embedded.status_code == 200
    assert distributed.content == embedded.content


def test_identical_concurrent_requests_run_once(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any]
) -> None:
    unique = {**applicant, "credit_amount": random.randint(20_000, 90_000)}
    request = {"instances": [unique], "options": {"shap": {"algorithm": "sampling"}}, "wait": 30}
    before = metric(http, "xai_jobs_submitted_total")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: httpx.post(
                    f"{cluster.gateway.url}/v1/models/german-credit/explain",
                    json=request,
                    timeout=60,
                ),
                range(8),
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert metric(http, "xai_jobs_submitted_total") - before == 1


def test_batch_reports_progress_and_streams_json_lines(
    http: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    request = {"instances": applicants, "wait": 0}  # 1000 rows, chunks of 100
    accepted = http.post("/v1/models/german-credit/explain", json=request)
    assert accepted.status_code == 202
    location = accepted.headers["location"]
    progress = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = http.get(location).json()
        progress.append(status["progress"])
        if status["status"] == "succeeded":
            break
        assert status["status"] in ("queued", "running"), status
        time.sleep(0.05)
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert any(0 < p < 1 for p in progress), progress
    lines = http.get(f"{location}/result", params={"format": "jsonl"}).content.splitlines()
    assert len(lines) == 1000
    rows = [orjson.loads(line) for line in lines]
    assert [r["index"] for r in rows] == list(range(1000))
    assert all(r["explanations"]["shap"]["evidence"]["additivity_error"] < 1e-6 for r in rows)
    whole = http.get(f"{location}/result").json()
    assert len(whole["results"]) == 1000
    assert whole["results"][7] == {
        k: v
        for k, v in rows[7].items()
        if k not in ("index", "model", "version", "content_hash", "job_id", "seed")
    }


def test_single_request_is_not_starved_by_a_batch(
    http: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    """The interactive queue goes first: a single request finishes while a batch that
    was queued before it is still far from done. The batch is 100 short chunks (TreeSHAP,
    a fraction of a second each), so a loaded machine slows both sides alike and no chunk
    nears the time limit."""
    batch = {"instances": applicants * 10, "wait": 0}
    accepted = http.post("/v1/models/german-credit/explain", json=batch, timeout=120)
    assert accepted.status_code == 202, accepted.text
    try:
        single = http.post(
            "/v1/models/german-credit/explain",
            json={"instances": [applicants[999]], "wait": 60},
        )
        assert single.status_code == 200
        batch_status = http.get(accepted.headers["location"]).json()
        assert batch_status["status"] in ("queued", "running"), batch_status.get("error")
        assert batch_status["progress"] <= 0.5
    finally:
        http.delete(accepted.headers["location"])


def test_cancel_stops_the_job_and_workers_live_on(
    http: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    job = http.post(
        "/v1/models/german-credit/explain",
        json={"instances": applicants[40:41], "options": SLOW, "wait": 0},
    ).json()
    poll(http, job["job_id"], {"running"}, timeout=60)
    assert http.delete(f"/v1/jobs/{job['job_id']}").json()["status"] == "cancelled"
    time.sleep(1)
    assert http.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "cancelled"
    ok = http.post(
        "/v1/models/german-credit/predict", json={"instances": applicants[41:43]}, params={}
    )
    assert ok.status_code == 200


def test_hard_time_limit_fails_the_job_with_its_reason(
    http: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    response = http.post(
        "/v1/models/german-credit/explain",
        json={"instances": applicants[50:51], "options": SLOW, "wait": 40},
    )
    assert response.status_code == 504
    assert "hard time limit of 8 s" in response.json()["detail"]
    status = http.get(f"/v1/jobs/{response.headers['x-job-id']}").json()
    assert status["status"] == "failed"


def test_a_killed_worker_loses_no_job(
    cluster: Cluster, http: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    """SIGKILL the worker running a job: it completes on another worker or fails with a
    reason; it never stays running."""
    medium = {"shap": {"algorithm": "sampling", "permutations": 256, "background_rows": 100}}
    job = http.post(
        "/v1/models/german-credit/explain",
        json={"instances": applicants[60:61], "options": medium, "wait": 0},
    ).json()
    poll(http, job["job_id"], {"running"}, timeout=120)
    running = [w for w in cluster.workers if w.ran(job["job_id"])]
    assert len(running) == 1
    running[0].kill()
    if all(w.process is None or w.process.poll() is not None for w in cluster.workers):
        cluster.add_worker()
    final = poll(http, job["job_id"], {"succeeded", "failed"}, timeout=120)
    if final["status"] == "failed":
        assert final["error"]["message"]
    else:
        result = final["result"]["results"][0]["explanations"]["shap"]
        assert result["evidence"]["additivity_error"] < 1e-9
    cluster.add_worker()  # keep two workers for the tests after this one


def test_redis_outage_gives_503_and_the_service_recovers(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any]
) -> None:
    cluster.redis.stop()
    try:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "Redis" in ready.json()["detail"]
        down = http.post("/v1/models/german-credit/explain", json={"instances": [applicant]})
        assert down.status_code == 503 and "Redis is unavailable" in down.json()["detail"]
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 60
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "gateway did not recover"
        time.sleep(0.2)
    # Append-only persistence kept the earlier results: this one is a cache hit.
    cached = http.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "methods": ["shap"], "wait": 30},
    )
    assert cached.status_code == 200 and cached.headers["x-cache"] == "hit"
    fresh = {**applicant, "credit_amount": 1234}
    recomputed = http.post(
        "/v1/models/german-credit/explain", json={"instances": [fresh], "wait": 60}
    )
    assert recomputed.status_code == 200, recomputed.text
    assert recomputed.headers["x-cache"] == "miss"


def test_no_worker_means_202_then_completion_once_one_starts(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any]
) -> None:
    for worker in cluster.workers:
        worker.stop()
    request = {"instances": [{**applicant, "credit_amount": 4321}], "wait": 1}
    accepted = http.post("/v1/models/german-credit/explain", json=request)
    assert accepted.status_code == 202
    cluster.add_worker()
    final = poll(http, accepted.json()["job_id"], {"succeeded"}, timeout=90)
    assert final["progress"] == 1.0


def test_cli_batch_writes_one_line_per_applicant(
    cluster: Cluster, http: httpx.Client, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from tests.conftest import DATA, ROOT

    out = tmp_path / "results.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "batch",
            "german-credit-logit",
            str(DATA),
            "--out",
            str(out),
            "--url",
            cluster.gateway.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "1000 rows written" in run.stdout
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == 1000 and rows[999]["index"] == 999
    assert {r["prediction"]["label"] for r in rows} == {"good", "bad"}
    assert all(r["explanations"]["shap"]["evidence"]["algorithm"] == "linear" for r in rows)


def test_workers_pick_up_a_new_version_without_restart(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any]
) -> None:
    from tests.conftest import ROOT

    source = next((ROOT / "models" / "german-credit-logit").iterdir())
    manifest = (
        (source / "manifest.yaml")
        .read_text()
        .replace(
            "description: Logistic regression", "description: Retrained logistic regression", 1
        )
    )
    files = {
        "manifest": ("manifest.yaml", manifest.encode()),
        "artifact": ("model.skops", (source / "model.skops").read_bytes()),
        "reference": ("reference.csv", (source / "reference.csv").read_bytes()),
        "evaluation": ("evaluation.csv", (source / "evaluation.csv").read_bytes()),
    }
    registered = http.post("/v1/models", files=files)
    assert registered.status_code == 201, registered.text
    version = registered.json()["version"]
    assert version != source.name
    assert http.get("/v1/models/german-credit-logit").json()["latest_version"] == version
    explained = http.post(
        f"/v1/models/german-credit-logit/explain?version={version}",
        json={"instances": [applicant], "wait": 60},
    )
    assert explained.status_code == 200, explained.text
    assert explained.json()["version"] == version


def test_a_version_registered_from_the_cli_is_served_without_restart(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any], tmp_path: Path
) -> None:
    """``xai-service register`` writes into the shared repository: the gateway finds the new
    model when a request names it, the workers load it on demand; a second version becomes
    the latest through the gateway's periodic rescan."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    source = next((ROOT / "models" / "german-credit-logit").iterdir())
    files = [str(source / n) for n in ("model.skops", "reference.csv", "evaluation.csv")]
    models_dir = cluster.env["XAI_MODELS_DIR"]
    for description in ("first", "second"):
        manifest = tmp_path / f"{description}.yaml"
        manifest.write_text(
            (source / "manifest.yaml")
            .read_text()
            .replace("name: german-credit-logit", "name: logit-from-cli", 1)
            .replace("description: Logistic", f"description: {description} logistic", 1)
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
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
        deadline, latest = time.monotonic() + 10, None
        while time.monotonic() < deadline and latest != version:
            described = http.get("/v1/models/logit-from-cli")
            latest = (
                described.json().get("latest_version") if described.status_code == 200 else None
            )
            time.sleep(0.2)
        assert latest == version, f"{description}: not served within 10 s"
        explained = http.post(
            "/v1/models/logit-from-cli/explain", json={"instances": [applicant], "wait": 60}
        )
        assert explained.status_code == 200, explained.text
        assert explained.json()["version"] == version


def test_an_artifact_that_crashes_its_loader_is_refused_and_no_worker_dies(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any], tmp_path: Path
) -> None:
    """The check runs in a child of the Celery child, so the crash is a 422 at once, not a
    lost worker whose task comes back to kill the next one."""
    from tests.registry.malformed import aborting_lightgbm_candidate
    from tests.registry.test_http import uploads

    def pool() -> dict[int, list[int]]:
        return {
            w.process.pid: sorted(c.pid for c in psutil.Process(w.process.pid).children())
            for w in cluster.workers
            if w.process.poll() is None
        }

    children = pool()
    refused = http.post("/v1/models", files=uploads(aborting_lightgbm_candidate(tmp_path)))
    assert refused.status_code == 422, refused.text
    assert "SIGABRT" in refused.json()["detail"][0]["msg"]
    served = http.post(
        "/v1/models/german-credit/predict", json={"instances": [applicant]}, timeout=60
    )
    assert served.status_code == 200, served.text
    assert pool() == children


def test_receipts_live_in_redis_without_ttl_and_survive_its_restart(
    cluster: Cluster, http: httpx.Client, applicant: dict[str, Any]
) -> None:
    import redis

    from service.jobs import redis_keys

    body = http.post(
        "/v1/models/german-credit/adverse-action", json={"applicant": applicant, "wait": 60}
    ).json()
    receipt_id = body["receipt_id"]
    store = redis.Redis.from_url(cluster.redis.url)
    assert store.ttl(redis_keys.receipt(receipt_id)) == -1  # kept until retention says so
    cluster.redis.stop()
    cluster.redis.start()
    deadline = time.monotonic() + 60
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "gateway did not recover"
        time.sleep(0.2)
    assert http.get(f"/v1/receipts/{receipt_id}").json()["response"] == {
        k: v for k, v in body.items() if k not in ("model", "version", "content_hash", "job_id")
    }
    verified = http.post(f"/v1/receipts/{receipt_id}/verify").json()
    assert verified["match"] is True, verified["differences"]

    stored = orjson.loads(store.get(redis_keys.receipt(receipt_id)))
    stored["response"]["decision"] = "approved"
    store.set(redis_keys.receipt(receipt_id), orjson.dumps(stored))
    tampered = http.post(f"/v1/receipts/{receipt_id}/verify").json()
    assert tampered["match"] is False and tampered["signature_valid"] is False
    refused = http.delete(f"/v1/models/german-credit/versions/{body['version']}")
    assert refused.status_code == 409
