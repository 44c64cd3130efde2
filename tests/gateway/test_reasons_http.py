"""Reasons a lender can defend, over HTTP against the real server: material reasons only
(per request too), the waterfall of the decision against the reasons' baseline, a 422 for
a regression model, receipts issued before materiality still verifying, Anchors' cut
points."""

from __future__ import annotations

import re
from typing import Any

import httpx
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.adverse.lenders import EMPLOYMENT, employment_data

NO_RECOURSE = {"recourse": {"enabled": False}}


def decide(client: httpx.Client, applicant: dict[str, Any], **options: Any) -> httpx.Response:
    return client.post(
        "/v1/models/german-credit/adverse-action",
        json={"applicant": applicant, "options": {**NO_RECOURSE, **options}},
    )


def test_only_material_reasons_are_stated_and_the_waterfall_shows_their_attributions(
    client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    response = decide(client, applicants[1])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["code"] for r in body["reasons"]] == ["LD02", "CA01", "SV01"]
    assert all(r["share"] >= 0.05 for r in body["reasons"])
    materiality = body["materiality"]
    assert materiality["min_reason_share"] == 0.05
    immaterial = {o["code"] for o in materiality["omitted"] if o["why"] == "immaterial"}
    assert {"CH01", "DP01"} <= immaterial
    assert body["attribution"]["favourable_class"] == "good"
    assert len(body["attribution"]["attributions"]) == 20

    everything = decide(client, applicants[1], min_reason_share=0).json()
    assert [r["code"] for r in everything["reasons"]] == ["LD02", "CA01", "SV01", "CH01"]

    svg = client.get("/v1/plots/waterfall", params={"job_id": body["job_id"]})
    assert svg.status_code == 200, svg.text
    text = " ".join(" ".join(re.findall(r">([^<>]+)<", svg.text)).split())  # lines wrap
    assert f"Why this decision: denied (probability of good {body['score']:.2f}" in text
    assert "against the policy baseline of the reasons: " + body["baseline"]["description"] in text
    for reason in body["reasons"]:  # the bars carry the reasons' own numbers
        assert f"{-reason['features'][0]['contribution']:+.3f}" in text


def test_a_materiality_threshold_outside_0_1_is_a_422(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    response = decide(client, applicant, min_reason_share=1.5)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "options", "min_reason_share"]


def regression_upload() -> dict[str, Any]:
    data = employment_data(rows=300)
    encode = ColumnTransformer([("e", OneHotEncoder(categories=[EMPLOYMENT]), ["employment"])],
                               remainder="passthrough")  # fmt: skip
    pipeline = Pipeline([("encode", encode), ("model", LinearRegression())])
    pipeline.fit(data[["employment", "debt"]], data["income"])
    manifest = {
        "name": "income-estimate",
        "task": "regression",
        "target": "income",
        "artifact": {"path": "model.skops", "format": "skops"},
        "reference_data": {"path": "reference.csv"},
        "features": [
            {"name": "employment", "type": "categorical", "categories": EMPLOYMENT,
             "reason": {"code": "EM10", "statement": "Type of employment"}},
            {"name": "debt", "type": "numeric", "range": [0, 2],
             "reason": {"code": "DT01", "statement": "Debt too high"}},
        ],
    }  # fmt: skip
    return {
        "manifest": ("manifest.yaml", yaml.safe_dump(manifest).encode()),
        "artifact": ("model.skops", skops.io.dumps(pipeline)),
        "reference": (
            "reference.csv",
            data[["employment", "debt", "income"]].iloc[:100].to_csv(index=False).encode(),
        ),
    }


def test_adverse_action_on_a_regression_model_is_a_422_saying_it_needs_a_classifier(
    client: httpx.Client,
) -> None:
    registered = client.post("/v1/models", files=regression_upload())
    assert registered.status_code in (200, 201), registered.text
    applicant = {"employment": "student", "debt": 1.0}
    url = "/v1/models/income-estimate/adverse-action"
    for response in (
        client.post(url, json={"applicant": applicant}),
        client.post(url + "/batch", json={"applicants": [applicant]}),
        client.post(url + "/batch", files={"file": ("a.csv", b"employment,debt\nstudent,1\n")}),
    ):
        assert response.status_code == 422, response.text
        [issue] = response.json()["detail"]
        assert issue["loc"] == ["path", "name"]
        assert "need a binary classifier" in issue["msg"] and "regression" in issue["msg"]
        assert "options" not in issue["msg"]
    # the model itself explains fine
    explained = client.post(
        "/v1/models/income-estimate/explain", json={"instances": [applicant], "wait": 60}
    )
    assert explained.status_code == 200, explained.text


def test_anchor_cut_points_per_request(client: httpx.Client, applicant: dict[str, Any]) -> None:
    url = "/v1/models/german-credit/explain"
    options: dict[str, Any] = {"anchor": {"cut_points": {"housing": [1.0]}}}
    bad = client.post(
        url, json={"instances": [applicant], "methods": ["anchor"], "options": options}
    )
    assert bad.status_code == 422
    [issue] = bad.json()["detail"]
    assert issue["loc"] == ["body", "options", "anchor", "cut_points", "housing"]
    options = {"anchor": {"cut_points": {"duration_in_month": [12, 24, 36]}, "quantile_bins": 5}}
    body = {"instances": [applicant], "methods": ["anchor"], "options": options, "wait": 60}
    response = client.post(url, json=body)
    assert response.status_code == 200, response.text
    evidence = response.json()["results"][0]["explanations"]["anchor"]["evidence"]
    found = {f["feature"]: f for f in evidence["discretisation"]["features"]}
    assert found["duration_in_month"] == {
        "feature": "duration_in_month", "source": "request", "edges": [12.0, 24.0, 36.0]
    }  # fmt: skip
    assert found["credit_amount"]["source"] == "quantiles"
    assert len(found["credit_amount"]["edges"]) == 4
    assert evidence["discretisation"]["quantile_bins"] == 5
