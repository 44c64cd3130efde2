"""End to end over HTTP against a real server process with the demo models."""

from __future__ import annotations

import concurrent.futures
import random
import time
from typing import Any

import httpx
import numpy as np
import pytest

from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore
from tests.conftest import ROOT

MODELS = ["german-credit", "german-credit-logit"]


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value from /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + ("{" + wanted + "}" if wanted else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def poll(client: httpx.Client, job_id: str, until: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["status"] in until:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not {until} in {timeout}s: {status}")


@pytest.fixture(scope="module")
def local_models() -> dict[str, LoadedModel]:
    store = ModelStore(ROOT / "models")
    store.scan()
    return {name: LoadedModel.load(store.get(name)) for name in MODELS}


def test_health_readiness_and_model_listing(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": 2}
    listed = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in listed] == MODELS
    detail = client.get("/v1/models/german-credit").json()
    assert detail["methods"] == ["anchor", "counterfactual", "lime", "shap"]
    assert detail["shap_algorithm"] == "tree"
    assert detail["reference_rows"] == 200 and detail["favourable_class"] == "good"
    assert len(detail["features"]) == 20
    protected = {f["name"] for f in detail["features"] if f["protected"]}
    assert protected == {"personal_status_and_sex", "age_in_years", "foreign_worker"}
    housing = next(f for f in detail["features"] if f["name"] == "housing")
    assert housing["categories"] == ["rent", "own", "for free"]
    assert client.get("/v1/models/german-credit-logit").json()["shap_algorithm"] == "linear"


@pytest.mark.parametrize("name", MODELS)
def test_predict_matches_the_model(
    client: httpx.Client,
    local_models: dict[str, LoadedModel],
    applicants: list[dict[str, Any]],
    name: str,
) -> None:
    rows = applicants[:40]
    body = client.post(f"/v1/models/{name}/predict", json={"instances": rows}).json()
    expected = local_models[name].predictor.probability(local_models[name].frame(rows))
    got = np.array([p["probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    labels = [p["label"] for p in body["predictions"]]
    assert labels == ["good" if p >= 0.5 else "bad" for p in expected]
    assert body["version"] == local_models[name].version.version_id


@pytest.mark.parametrize(
    ("name", "algorithm"), [("german-credit", "tree"), ("german-credit-logit", "linear")]
)
def test_explain_reports_raw_features_with_evidence(
    client: httpx.Client, applicant: dict[str, Any], name: str, algorithm: str
) -> None:
    response = client.post(
        f"/v1/models/{name}/explain", json={"instances": [applicant], "methods": ["shap"]}
    )
    assert response.status_code == 200
    result = response.json()["results"][0]
    shap = result["explanations"]["shap"]
    assert result["prediction"]["label"] == "bad"
    assert shap["output_space"] == "log_odds" and shap["perturbation"] == "interventional"
    assert shap["evidence"]["algorithm"] == algorithm
    assert sorted(a["feature"] for a in shap["attributions"]) == sorted(applicant)
    assert {a["feature"]: a["value"] for a in shap["attributions"]} == applicant
    total = shap["base_value"] + sum(a["contribution"] for a in shap["attributions"])
    assert shap["evidence"]["additivity_error"] < 1e-6
    assert total == pytest.approx(shap["evidence"]["model_output"], abs=1e-6)
    p = result["prediction"]["probability"]
    assert shap["evidence"]["model_output"] == pytest.approx(np.log(p / (1 - p)), abs=1e-9)
    magnitudes = [abs(a["contribution"]) for a in shap["attributions"]]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_probability_output_on_request(client: httpx.Client, applicant: dict[str, Any]) -> None:
    body = client.post(
        "/v1/models/german-credit-logit/explain",
        json={"instances": [applicant], "options": {"shap": {"output": "probability"}}},
    ).json()
    shap = body["results"][0]["explanations"]["shap"]
    assert shap["output_space"] == "probability"
    assert shap["evidence"]["algorithm"] == "sampling"
    total = shap["base_value"] + sum(a["contribution"] for a in shap["attributions"])
    assert total == pytest.approx(body["results"][0]["prediction"]["probability"], abs=1e-9)
    assert all(a["std_error"] >= 0 for a in shap["attributions"])
    assert shap["evidence"]["seed"] is not None


def test_repeat_is_identical_bytes_from_cache(
    client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    request = {
        "instances": applicants[5:7],
        "methods": ["shap"],
        "options": {"shap": {"algorithm": "sampling", "permutations": 8}},
    }
    first = client.post("/v1/models/german-credit/explain", json=request)
    second = client.post("/v1/models/german-credit/explain", json=request)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content
    reseeded = {**request, "options": {**request["options"], "seed": 12345}}
    third = client.post("/v1/models/german-credit/explain", json=reseeded)
    assert third.headers["x-cache"] == "miss" and third.json()["seed"] == 12345
    assert third.content != first.content


def test_identical_concurrent_requests_run_once(server: Any, applicant: dict[str, Any]) -> None:
    unique = {**applicant, "credit_amount": random.randint(20_000, 90_000)}
    request = {"instances": [unique], "options": {"shap": {"algorithm": "sampling"}}}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before = metric(http, "xai_jobs_submitted_total")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(
                    lambda _: httpx.post(
                        f"{server.url}/v1/models/german-credit/explain", json=request, timeout=60
                    ),
                    range(8),
                )
            )
        after = metric(http, "xai_jobs_submitted_total")
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert after - before == 1


def test_accepted_job_is_polled_to_its_result(
    client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    request = {
        "instances": applicants[100:220],
        "wait": 0,
        "options": {"shap": {"algorithm": "sampling", "permutations": 4}},
    }
    accepted = client.post("/v1/models/german-credit/explain", json=request)
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/v1/jobs/{job_id}"
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(accepted.headers["location"]).json()
        seen.append(status["progress"])
        if status["status"] == "succeeded":
            break
        assert status["status"] in ("queued", "running")
        time.sleep(0.05)
    assert status["progress"] == 1.0 and seen == sorted(seen)
    assert len(status["result"]["results"]) == 120
    again = client.post("/v1/models/german-credit/explain", json={**request, "wait": 5})
    assert again.headers["x-cache"] == "hit"
    assert again.json() == status["result"]


def test_cancel_stops_a_running_job(client: httpx.Client, applicants: list[dict[str, Any]]) -> None:
    slow = {
        "instances": applicants[300:304],
        "wait": 0,
        "options": {
            "shap": {"algorithm": "sampling", "permutations": 2048, "background_rows": 200}
        },
    }
    job_id = client.post("/v1/models/german-credit/explain", json=slow).json()["job_id"]
    poll(client, job_id, {"running"}, timeout=30)
    cancelled = client.delete(f"/v1/jobs/{job_id}").json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    quick = client.post("/v1/models/german-credit/predict", json={"instances": applicants[:3]})
    assert quick.status_code == 200


def test_version_can_be_pinned(client: httpx.Client, applicant: dict[str, Any]) -> None:
    latest = client.get("/v1/models/german-credit").json()["latest_version"]
    pinned = client.post(
        f"/v1/models/german-credit/predict?version={latest[:8]}", json={"instances": [applicant]}
    )
    assert pinned.status_code == 200 and pinned.json()["version"] == latest
    assert (
        client.post(
            "/v1/models/german-credit/predict?version=ffffffff", json={"instances": [applicant]}
        ).status_code
        == 404
    )
    assert client.get("/v1/jobs/" + "0" * 64).status_code == 404


def _with(applicant: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row = {**applicant, **changes}
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "status", "loc", "words"),
    [
        ({"age_in_years": _DROP}, 422, ["body", "instances", 0, "age_in_years"], "missing"),
        ({"shoe_size": 43}, 422, ["body", "instances", 0, "shoe_size"], "unknown feature"),
        ({"credit_amount": "a lot"}, 422, ["body", "instances", 0, "credit_amount"], "number"),
        ({"credit_amount": True}, 422, ["body", "instances", 0, "credit_amount"], "number"),
        ({"housing": "castle"}, 422, ["body", "instances", 0, "housing"], "allowed"),
        ({"housing": 3}, 422, ["body", "instances", 0, "housing"], "string"),
        ({"duration_in_month": 1e9}, 422, ["body", "instances", 0, "duration_in_month"], "between"),
        ({"duration_in_month": 12.5}, 422, ["body", "instances", 0, "duration_in_month"], "whole"),
    ],
)
def test_bad_instances_are_named(
    client: httpx.Client,
    applicant: dict[str, Any],
    changes: dict[str, Any],
    status: int,
    loc: list[Any],
    words: str,
) -> None:
    body = {"instances": [applicant, _with(applicant, **changes)]}
    response = client.post("/v1/models/german-credit/explain", json=body)
    assert response.status_code == status
    issue = response.json()["detail"][0]
    loc[2] = 1
    assert issue["loc"] == loc and words in issue["msg"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(
    client: httpx.Client, applicant: dict[str, Any], token: str
) -> None:
    text = httpx.Request("POST", "/", json={"instances": [applicant]}).content.decode()
    text = text.replace(f'"credit_amount":{applicant["credit_amount"]}', f'"credit_amount":{token}')
    response = client.post(
        "/v1/models/german-credit/explain",
        content=text,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "instances", 0, "credit_amount"]


def test_request_level_errors(client: httpx.Client, applicant: dict[str, Any]) -> None:
    explain = "/v1/models/german-credit/explain"
    assert (
        client.post("/v1/models/nope/explain", json={"instances": [applicant]}).status_code == 404
    )
    empty = client.post(explain, json={"instances": []})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "instances"]
    method = client.post(explain, json={"instances": [applicant], "methods": ["magic"]})
    assert method.status_code == 422 and "'shap'" in method.json()["detail"][0]["msg"]
    assert "magic" in method.json()["detail"][0]["msg"]
    option = client.post(
        explain, json={"instances": [applicant], "options": {"shap": {"permutations": -4}}}
    )
    assert option.json()["detail"][0]["loc"] == ["body", "options", "shap", "permutations"]
    too_many = client.post(explain, json={"instances": [applicant] * 10_001})
    assert too_many.status_code == 413 and "10000" in too_many.json()["detail"]
    huge = client.post(
        explain, content=b" " * (33 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    broken = client.post(
        explain, content=b'{"instances": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422


def test_metrics_count_routes_cache_and_jobs(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    for _ in range(2):
        client.post("/v1/models/german-credit-logit/explain", json={"instances": [applicant]})
    text = client.get("/metrics").text
    assert (
        'xai_http_requests_total{method="POST",route="/v1/models/{name}/explain",status="200"}'
        in text
    )
    assert "xai_http_request_duration_seconds_bucket" in text
    assert metric(client, "xai_cache_requests_total", result="hit") >= 1
    assert metric(client, "xai_jobs", state="succeeded") >= 1


def test_metric_labels_come_from_bounded_sets(client: httpx.Client) -> None:
    """A method outside the standard ones is labelled ``other``; an unknown path is
    ``unmatched`` (clients cannot grow the label sets)."""
    assert client.request("PURGE", "/healthz").status_code == 405
    assert client.get("/no/such/path/" + "x" * 40).status_code == 404
    text = client.get("/metrics").text
    assert 'method="PURGE"' not in text and "x" * 40 not in text
    assert metric(client, "xai_http_requests_total", method="other", route="/healthz", status="405")
    assert metric(client, "xai_http_requests_total", method="GET", route="unmatched", status="404")


def test_faithfulness_on_request(client: httpx.Client, applicant: dict[str, Any]) -> None:
    body = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "options": {"faithfulness": {"k": 4, "random_orders": 10}}},
    )
    assert body.status_code == 200, body.text
    result = body.json()["results"][0]
    [test] = result["faithfulness"]
    assert test["method"] == "shap" and test["k"] == 4 and len(test["drops"]) == 4
    assert test["gap"] == pytest.approx(test["aopc"] - test["random_aopc"])
    assert test["gap"] > 0
    assert "agreement" not in result  # one method: nothing to compare
    plain = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "options": {"faithfulness": True}},
    )
    assert plain.json()["results"][0]["faithfulness"][0]["k"] == 5


@pytest.mark.parametrize("name", MODELS)
def test_shap_and_lime_together_carry_agreement(
    client: httpx.Client, applicant: dict[str, Any], name: str
) -> None:
    response = client.post(
        f"/v1/models/{name}/explain",
        json={
            "instances": [applicant],
            "methods": ["shap", "lime"],
            "options": {
                "lime": {"samples": 2000, "stability": 3},
                "agreement_k": 5,
                "faithfulness": True,
            },
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    lime = result["explanations"]["lime"]
    assert 0 < lime["evidence"]["weighted_r2"] <= 1
    assert lime["evidence"]["samples"] == 2000 and lime["output_space"] == "probability"
    assert 0 <= lime["evidence"]["stability"]["mean_jaccard"] <= 1
    block = result["agreement"]
    assert set(block["top_features"]) == {"shap", "lime"}
    assert len(block["top_features"]["shap"]) == 5
    [pair] = block["pairs"]
    assert pair["jaccard"] == pytest.approx(
        len(set(block["top_features"]["shap"]) & set(block["top_features"]["lime"]))
        / len(set(block["top_features"]["shap"]) | set(block["top_features"]["lime"]))
    )
    assert {t["method"] for t in result["faithfulness"]} == {"shap", "lime"}
    again = client.post(
        f"/v1/models/{name}/explain",
        json={
            "instances": [applicant],
            "methods": ["shap", "lime"],
            "options": {
                "lime": {"samples": 2000, "stability": 3},
                "agreement_k": 5,
                "faithfulness": True,
            },
        },
    )
    assert again.content == response.content


def test_bad_lime_options_are_named(client: httpx.Client, applicant: dict[str, Any]) -> None:
    response = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "methods": ["lime"], "options": {"lime": {"samples": -5}}},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "options", "lime", "samples"]


@pytest.mark.parametrize("name", MODELS)
def test_counterfactuals_rescore_as_approved_over_http(
    client: httpx.Client, applicant: dict[str, Any], name: str
) -> None:
    """Apply each returned counterfactual to the applicant and ask the service itself."""
    detail = client.get(f"/v1/models/{name}").json()
    fixed = {f["name"] for f in detail["features"] if f["protected"] or not f["mutable"]}
    response = client.post(
        f"/v1/models/{name}/explain",
        json={
            "instances": [applicant],
            "methods": ["counterfactual"],
            "options": {"counterfactual": {"count": 3, "time_budget": 20}},
            "wait": 60,
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]["explanations"]["counterfactual"]
    assert result["desired_class"] == "good"
    assert result["evidence"]["returned"] == len(result["counterfactuals"]) >= 1
    assert result["evidence"]["validity"] == 1.0
    changed_rows = []
    for counterfactual in result["counterfactuals"]:
        row = dict(applicant)
        for change in counterfactual["changes"]:
            assert change["feature"] not in fixed
            assert row[change["feature"]] == change["from"]
            row[change["feature"]] = change["to"]
        changed_rows.append(row)
    scored = client.post(f"/v1/models/{name}/predict", json={"instances": changed_rows}).json()
    for prediction, counterfactual in zip(
        scored["predictions"], result["counterfactuals"], strict=True
    ):
        assert prediction["label"] == "good"
        assert prediction["probability"] == pytest.approx(counterfactual["probability"])


def test_counterfactual_options_naming_features_are_checked(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/models/german-credit/explain",
        json={
            "instances": [applicant],
            "methods": ["counterfactual"],
            "options": {"counterfactual": {"features_to_vary": ["age_in_years"]}},
        },
    )
    assert response.status_code == 422
    issue = response.json()["detail"][0]
    assert issue["loc"] == ["body", "options", "counterfactual", "features_to_vary"]
    assert "age_in_years" in issue["msg"]


def test_three_methods_and_an_anchor_that_holds(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "methods": ["shap", "lime", "anchor"], "wait": 60},
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    anchor = result["explanations"]["anchor"]
    assert anchor["label"] == "bad" and anchor["rule"]
    assert anchor["text"] == " AND ".join(c["text"] for c in anchor["rule"])
    assert anchor["evidence"]["threshold"] == 0.95
    if anchor["evidence"]["threshold_met"]:
        assert anchor["evidence"]["precision_fresh"] >= 0.9
    assert set(result["agreement"]["top_features"]) == {"shap", "lime", "anchor"}
    assert len(result["agreement"]["pairs"]) == 3
    bad = client.post(
        "/v1/models/german-credit/explain",
        json={
            "instances": [applicant],
            "methods": ["anchor"],
            "options": {"anchor": {"threshold": 1.5}},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "options", "anchor", "threshold"]
