"""Global explanations over HTTP and every plot kind as valid SVG and PNG of real size."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ElementTree
from typing import Any

import httpx
import pytest

GLOBAL_BODY: dict[str, Any] = {
    "methods": ["permutation_importance", "shap_importance", "pdp", "ice", "ale"],
    "options": {
        "seed": 3,
        "permutation_importance": {"n_repeats": 2},
        "pdp": {"features": ["duration_in_month", "housing"], "grid_resolution": 8},
        "ice": {"features": ["duration_in_month", "housing"], "max_rows": 20},
        "ale": {"features": ["credit_amount", "duration_in_month"], "bins": 6},
    },
    "wait": 60,
}
PLOTS = [
    ("importance", {}),
    ("importance", {"method": "shap_importance"}),
    ("beeswarm", {}),
    ("pdp", {"feature": "duration_in_month"}),
    ("pdp", {"feature": "housing"}),
    ("ale", {"feature": "credit_amount"}),
]


@pytest.fixture(scope="module")
def global_job(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/v1/models/german-credit/global", json=GLOBAL_BODY, timeout=90)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def explain_job(client: httpx.Client, applicant: dict[str, Any]) -> str:
    body = {"instances": [applicant], "methods": ["shap"], "wait": 60}
    response = client.post("/v1/models/german-credit-logit/explain", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def assert_svg(body: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(body)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(body) > 8_000 and b'href="http' not in body  # nothing to fetch
    return root


def assert_png(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR"
    width, height = struct.unpack(">II", body[16:24])
    assert width > 400 and height > 300 and len(body) > 15_000
    return width, height


def test_global_job_reports_each_method_and_its_data(
    client: httpx.Client, global_job: dict[str, Any]
) -> None:
    results = global_job["results"]
    assert global_job["kind"] == "global" and global_job["seed"] == 3
    assert set(results) == set(GLOBAL_BODY["methods"])
    permutation = results["permutation_importance"]
    assert permutation["data"] == {"rows": 300, "source": "evaluation set: 30% stratified hold-out"}
    assert permutation["metric"] == "roc_auc" and permutation["n_repeats"] == 2
    assert permutation["features"][0]["feature"] == "status_of_existing_checking_account"
    assert isinstance(permutation["warnings"], list)
    assert results["shap_importance"]["data"]["rows"] == 200
    assert "reference data" in results["shap_importance"]["data"]["source"]
    assert [f["feature"] for f in results["pdp"]["features"]] == ["duration_in_month", "housing"]
    assert results["pdp"]["features"][1]["grid"] == ["rent", "own", "for free"]
    assert len(results["ice"]["features"][0]["curves"]) == 20
    assert len(results["ale"]["features"][0]["edges"]) == 7

    again = client.post("/v1/models/german-credit/global", json=GLOBAL_BODY)
    assert again.headers["x-cache"] == "hit" and again.json() == global_job
    status = client.get(f"/v1/jobs/{global_job['job_id']}").json()
    assert (status["kind"], status["status"]) == ("global", "succeeded")
    lines = client.get(f"/v1/jobs/{global_job['job_id']}/result", params={"format": "jsonl"})
    assert lines.status_code == 200 and len(lines.text.splitlines()) == 5


@pytest.mark.parametrize(("kind", "params"), PLOTS)
def test_global_plots_are_valid_svg_and_png(
    client: httpx.Client, global_job: dict[str, Any], kind: str, params: dict[str, str]
) -> None:
    query = {"job_id": global_job["job_id"], **params}
    svg = client.get(f"/v1/plots/{kind}", params=query)
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert_svg(svg.content)
    feature = params.get("feature", "status_of_existing_checking_account").replace("_", " ")
    assert feature.encode() in svg.content  # readable names, as text
    png = client.get(f"/v1/plots/{kind}", params={**query, "format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert_png(png.content)


def test_waterfall_of_an_explain_job(client: httpx.Client, explain_job: str) -> None:
    svg = client.get("/v1/plots/waterfall", params={"job_id": explain_job})
    assert svg.status_code == 200, svg.text
    assert_svg(svg.content)
    assert b"status of existing checking account = ... &lt; 0 DM" in svg.content
    assert b"Why this decision: bad" in svg.content
    png = client.get("/v1/plots/waterfall", params={"job_id": explain_job, "format": "png"})
    assert assert_png(png.content)[0] > 600
    same = client.get("/v1/plots/waterfall", params={"job_id": explain_job})
    assert same.content == svg.content  # deterministic bytes


def test_plot_errors_name_the_parameter(
    client: httpx.Client, global_job: dict[str, Any], explain_job: str
) -> None:
    missing = client.get("/v1/plots/ale", params={"job_id": "0" * 64})
    assert missing.status_code == 404
    wrong_kind = client.get("/v1/plots/beeswarm", params={"job_id": explain_job})
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["detail"][0]["loc"] == ["query", "job_id"]
    no_feature = client.get(
        "/v1/plots/ale", params={"job_id": global_job["job_id"], "feature": "housing"}
    )
    assert no_feature.status_code == 422
    assert no_feature.json()["detail"][0]["loc"] == ["query", "feature"]
    index = client.get("/v1/plots/waterfall", params={"job_id": explain_job, "index": 3})
    assert index.json()["detail"][0]["loc"] == ["query", "index"]
    fmt = client.get("/v1/plots/ale", params={"job_id": global_job["job_id"], "format": "gif"})
    assert fmt.status_code == 422 and fmt.json()["detail"][0]["loc"] == ["query", "format"]


def test_bad_global_requests_are_422_naming_the_field(client: httpx.Client) -> None:
    url = "/v1/models/german-credit/global"
    cases = [
        ({"methods": ["shapley"]}, ["body", "methods", 0]),
        ({"methods": ["ale"], "options": {"ale": {"features": ["housing"]}}}, None),
        ({"methods": ["pdp"], "options": {"pdp": {"features": ["nope"]}}}, None),
        ({"methods": ["pdp"], "options": {"pdp": {"grid_resolution": 1000}}}, None),
        ({"methods": ["pdp"], "options": {"pdp": {"bins": 3}}}, None),
        ({"methods": ["permutation_importance"], "rows": [{"x": 1}]}, None),
        ({"methods": ["permutation_importance"], "labels": ["good"]}, ["body", "labels"]),
    ]
    expected = {
        1: ["body", "options", "ale", "features", 0],
        2: ["body", "options", "pdp", "features", 0],
        3: ["body", "options", "pdp", "grid_resolution"],
        4: ["body", "options", "pdp", "bins"],
        5: ["body", "rows", 0, "x"],
    }
    for i, (body, loc) in enumerate(cases):
        response = client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        locs = [issue["loc"] for issue in response.json()["detail"]]
        assert (loc or expected[i]) in locs, (body, locs)


def test_supplied_rows_need_labels_for_permutation_importance(
    client: httpx.Client, applicants: list[dict[str, Any]], german_credit: Any
) -> None:
    rows = applicants[:60]
    url = "/v1/models/german-credit-logit/global"
    unlabelled = client.post(url, json={"methods": ["permutation_importance"], "rows": rows})
    assert unlabelled.status_code == 422
    assert unlabelled.json()["detail"][0]["loc"] == ["body", "labels"]
    labels = german_credit["creditability"].iloc[:60].tolist()
    body = {
        "methods": ["permutation_importance"],
        "options": {"permutation_importance": {"n_repeats": 1}},
        "rows": rows,
        "labels": labels,
        "wait": 60,
    }
    labelled = client.post(url, json=body)
    assert labelled.status_code == 200, labelled.text
    section = labelled.json()["results"]["permutation_importance"]
    assert section["data"] == {"rows": 60, "source": "request rows"}
