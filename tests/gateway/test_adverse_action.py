"""Adverse-action decisions, receipts and batch notices over HTTP against a real server."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
import yaml

from tests.adverse.conftest import PROTECTED
from tests.conftest import ServerProcess

MODEL = "german-credit"


def decide(client: httpx.Client, applicant: dict[str, Any], **extra: Any) -> httpx.Response:
    return client.post(f"/v1/models/{MODEL}/adverse-action", json={"applicant": applicant, **extra})


def receipts_db(server: ServerProcess) -> Path:
    return Path(server.env["XAI_RECEIPTS_PATH"])


def test_a_denial_carries_reasons_recourse_evidence_and_a_receipt(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    response = decide(client, applicant, application_id="A-4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "denied" and body["score"] < body["threshold"] == 0.5
    assert body["model"] == MODEL and body["application_id"] == "A-4"
    assert body["baseline"]["kind"] == "approved" and body["baseline"]["rows"] > 50
    assert body["attribution"]["method"] == "tree"
    reasons = body["reasons"]
    assert 1 <= len(reasons) <= 4
    assert [r["rank"] for r in reasons] == list(range(1, len(reasons) + 1))
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0
    for reason in reasons:
        assert reason["code"] and reason["statement"] and reason["feature"] not in PROTECTED
        assert reason["value"] == applicant[reason["feature"]]
    options = body["recourse"]["options"]
    assert options and body["evidence"]["recourse_validity"] == [True] * len(options)
    assert all(o["score"] >= 0.5 and o["addresses"] for o in options)
    assert body["evidence"]["additivity_error"] < 1e-6
    probe = {p["feature"] for p in body["evidence"]["fairness_probe"]}
    assert probe == PROTECTED
    assert body["receipt_id"].startswith("rcpt_")
    assert reasons[0]["statement"] in body["notice"] and body["receipt_id"] in body["notice"]
    assert "Application: A-4" in body["notice"]


def test_the_same_request_gives_the_same_bytes_and_receipt(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    first = decide(client, applicant, options={"max_reasons": 2})
    second = decide(client, applicant, options={"max_reasons": 2})
    assert first.content == second.content
    assert second.headers["X-Cache"] == "hit"
    assert len(first.json()["reasons"]) == 2


def test_an_approval_has_no_reasons_and_a_receipt(
    client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    body = decide(client, applicants[0]).json()
    assert body["decision"] == "approved" and body["score"] >= body["threshold"]
    assert body["reasons"] == [] and body["recourse"] is None and body["notice"] is None
    receipt = client.get(f"/v1/receipts/{body['receipt_id']}")
    assert receipt.status_code == 200
    assert receipt.json()["response"]["decision"] == "approved"


def test_a_receipt_records_the_model_request_seeds_and_response(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    body = decide(client, applicant, options={"seed": 11}).json()
    receipt = client.get(f"/v1/receipts/{body['receipt_id']}").json()
    model = client.get(f"/v1/models/{MODEL}").json()
    version = next(v for v in model["versions"] if v["version"] == body["version"])
    assert receipt["model"] == MODEL and receipt["version"] == body["version"]
    assert receipt["content_hash"] == version["content_hash"] == body["content_hash"]
    assert receipt["manifest_hash"] == version["manifest_hash"]
    assert receipt["seed"] == 11 and receipt["row_seed"] == body["evidence"]["seed"]
    assert receipt["request"]["applicant"] == {
        k: float(v) if isinstance(v, int) else v for k, v in applicant.items()
    }
    assert receipt["request"]["options"]["seed"] == 11
    assert receipt["baseline"] == body["baseline"]
    header = ("model", "version", "content_hash", "job_id")
    assert receipt["response"] == {k: v for k, v in body.items() if k not in header}
    assert abs(receipt["issued_at"] - time.time()) < 600


def test_a_receipt_verifies_and_a_tampered_one_does_not(
    server: ServerProcess, client: httpx.Client, applicant: dict[str, Any]
) -> None:
    body = decide(client, applicant, options={"seed": 5}).json()
    receipt_id = body["receipt_id"]
    verified = client.post(f"/v1/receipts/{receipt_id}/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["match"] is True and verified.json()["differences"] == []
    assert verified.json()["signature_valid"] and verified.json()["receipt_id_valid"]
    assert verified.json()["recourse_match"] is True
    assert verified.json()["replayed_with"]["version"] == body["version"]

    with sqlite3.connect(receipts_db(server)) as db:
        (raw,) = db.execute("SELECT body FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        stored = orjson.loads(raw)
        stored["response"]["reasons"][0]["code"] = "XX99"
        stored["response"]["score"] = 0.9
        db.execute("UPDATE receipts SET body = ? WHERE id = ?", (orjson.dumps(stored), receipt_id))
    tampered = client.post(f"/v1/receipts/{receipt_id}/verify").json()
    assert tampered["match"] is False and tampered["signature_valid"] is False
    assert "altered" in tampered["problem"] and tampered["replayed_with"] is None
    # the altered record is what GET returns: its signature no longer fits it
    assert client.get(f"/v1/receipts/{receipt_id}").json()["response"]["score"] == 0.9


def test_receipts_survive_a_restart(
    models_dir: Path, applicant: dict[str, Any], tmp_path: Path
) -> None:
    env = {"XAI_RECEIPTS_PATH": str(tmp_path / "receipts.sqlite3")}
    first = ServerProcess(models_dir, env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as http:
            receipt_id = decide(http, applicant).json()["receipt_id"]
    finally:
        first.stop()
    second = ServerProcess(models_dir, env).start()
    try:
        with httpx.Client(base_url=second.url, timeout=60) as http:
            assert http.get(f"/v1/receipts/{receipt_id}").status_code == 200
            verified = http.post(f"/v1/receipts/{receipt_id}/verify").json()
            assert verified["match"] is True, verified["differences"]
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("change", "options", "loc", "message"),
    [
        ({"income": 1}, {}, ["body", "applicant", "income"], "unknown feature"),
        ({"-": "credit_amount"}, {}, ["body", "applicant", "credit_amount"], "missing"),
        ({"credit_amount": "a lot"}, {}, ["body", "applicant", "credit_amount"], "number"),
        ({"housing": "castle"}, {}, ["body", "applicant", "housing"], "allowed category"),
        ({}, {"max_reasons": 0}, ["body", "options", "max_reasons"], "greater than or equal"),
        ({}, {"max_reasons": 11}, ["body", "options", "max_reasons"], "less than or equal"),
        ({}, {"baseline": "everyone"}, ["body", "options", "baseline"], "approved"),
        ({}, {"recourse": {"count": 0}}, ["body", "options", "recourse", "count"], "greater"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: httpx.Client,
    applicant: dict[str, Any],
    change: dict[str, Any],
    options: dict[str, Any],
    loc: list[str],
    message: str,
) -> None:
    bad = {**applicant, **change}
    if "-" in change:
        bad = {k: v for k, v in applicant.items() if k != change["-"]}
    response = decide(client, bad, options=options)
    assert response.status_code == 422, response.text
    issue = next(i for i in response.json()["detail"] if i["loc"] == loc)
    assert message in issue["msg"]


def test_batch_notices_for_all_applicants(
    server: ServerProcess, client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    ids = [f"A-{i:04d}" for i in range(len(applicants))]
    submitted = client.post(
        "/v1/models/german-credit-logit/adverse-action/batch",
        json={"applicants": applicants, "application_ids": ids},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    progress = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        progress.append(status["progress"])
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert status["status"] == "succeeded", status
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert any(0 < p < 1 for p in progress)

    document = client.get(f"/v1/jobs/{job_id}/result").json()
    rows = document["results"]
    assert document["kind"] == "adverse_action" and len(rows) == 1000
    assert [r["application_id"] for r in rows] == ids
    receipt_ids = {r["receipt_id"] for r in rows}
    assert len(receipt_ids) == 1000
    with sqlite3.connect(receipts_db(server)) as db:
        stored = {
            r
            for (r,) in db.execute(
                "SELECT id FROM receipts WHERE json_extract(CAST(body AS TEXT), '$.job_id') = ?",
                (job_id,),
            )
        }
    assert stored == receipt_ids
    denied = [r for r in rows if r["decision"] == "denied"]
    assert 150 < len(denied) < 500
    for row in rows:
        assert not {f["feature"] for r in row["reasons"] for f in r["features"]} & PROTECTED
        assert (row["notice"] is not None) == (row["decision"] == "denied")

    table = client.get(f"/v1/jobs/{job_id}/result", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(table.text)))
    assert len(records) == 1000
    assert records[4]["application_id"] == "A-0004"
    assert records[4]["decision"] == rows[4]["decision"]
    assert records[4]["receipt_id"] == rows[4]["receipt_id"]
    if rows[4]["reasons"]:
        assert records[4]["reason_1_code"] == rows[4]["reasons"][0]["code"]

    notices = client.get(f"/v1/jobs/{job_id}/result", params={"format": "notices"})
    texts = notices.text.split("\f\n")
    assert len(texts) == len(denied)
    assert all("NOTICE OF ACTION TAKEN" in t for t in texts)
    assert denied[0]["receipt_id"] in texts[0]

    lines = client.get(f"/v1/jobs/{job_id}/result", params={"format": "jsonl"}).text.splitlines()
    assert len(lines) == 1000 and orjson.loads(lines[3])["receipt_id"] == rows[3]["receipt_id"]


def test_batch_from_a_csv_upload(client: httpx.Client, applicants: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["application_id", *applicants[0]])
    writer.writeheader()
    for i, row in enumerate(applicants[:6]):
        writer.writerow({"application_id": f"CSV-{i}", **row})
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch",
        files={"file": ("applicants.csv", out.getvalue().encode(), "text/csv")},
        data={"options": '{"max_reasons": 2, "recourse": {"enabled": false}}', "wait": "30"},
    )
    assert response.status_code in (200, 202), response.text
    job_id = response.json()["job_id"]
    for _ in range(240):
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["status"] == "succeeded":
            break
        time.sleep(0.25)
    rows = status["result"]["results"]
    assert [r["application_id"] for r in rows] == [f"CSV-{i}" for i in range(6)]
    assert all(len(r["reasons"]) <= 2 and r["recourse"] is None for r in rows)
    assert rows[4]["decision"] == "denied"


def test_a_bad_csv_is_a_422_naming_line_and_column(
    client: httpx.Client, applicants: list[dict[str, Any]]
) -> None:
    header = ",".join(["nickname", *applicants[0]])
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch",
        files={"file": ("a.csv", f"{header}\n".encode(), "text/csv")},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file", "columns", "nickname"]
    rows = [applicants[0], {**applicants[1], "credit_amount": "many"}]
    text = pd.DataFrame(rows).to_csv(index=False)  # quoted: some categories hold commas
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch",
        files={"file": ("a.csv", text.encode(), "text/csv")},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file", 3, "credit_amount"]


def test_a_version_with_receipts_cannot_be_deleted(
    client: httpx.Client, models_dir: Path, applicant: dict[str, Any]
) -> None:
    body = decide(client, applicant).json()
    refused = client.delete(f"/v1/models/{MODEL}/versions/{body['version']}")
    assert refused.status_code == 409
    assert "receipt" in refused.json()["detail"]
    assert client.get(f"/v1/models/{MODEL}", params={"version": body["version"]}).status_code == 200

    # a version nobody has a receipt for can go
    folder = models_dir / MODEL / body["version"]
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    manifest["description"] = "a copy to delete"
    files = {
        "manifest": yaml.safe_dump(manifest).encode(),
        "artifact": (folder / "model.skops").read_bytes(),
        "reference": (folder / "reference.csv").read_bytes(),
        "evaluation": (folder / "evaluation.csv").read_bytes(),
    }
    registered = client.post("/v1/models", files=files)
    assert registered.status_code == 201, registered.text
    copy = registered.json()["version"]
    assert client.delete(f"/v1/models/{MODEL}/versions/{copy}").status_code == 204
    assert client.get(f"/v1/models/{MODEL}", params={"version": copy}).status_code == 404
    assert not (models_dir / MODEL / copy).exists()
    assert client.get(f"/v1/models/{MODEL}").json()["latest_version"] == body["version"]


def test_the_policy_baseline_can_be_overridden_per_request(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    default = decide(client, applicant, options={"recourse": {"enabled": False}}).json()
    whole = decide(
        client, applicant, options={"baseline": "reference", "recourse": {"enabled": False}}
    ).json()
    assert default["baseline"]["kind"] == "approved"
    assert whole["baseline"]["kind"] == "reference" and whole["baseline"]["rows"] == 200
    assert whole["baseline"]["rows"] > default["baseline"]["rows"]
    # against all applicants (more of them bad) the applicant looks less unusual
    assert whole["attribution"]["base_value"] < default["attribution"]["base_value"]
    assert sum(r["contribution"] for r in whole["reasons"]) < sum(
        r["contribution"] for r in default["reasons"]
    )
    assert whole["receipt_id"] != default["receipt_id"]
