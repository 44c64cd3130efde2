"""Submit a CSV of applicants as one batch job over HTTP and collect its results."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ProgressCallback = Callable[[float, str], None]


class BatchError(RuntimeError):
    """The service refused the batch or the job did not succeed; the message says why."""


def read_instances(path: Path, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a CSV typed by the model's feature schema (extra columns are dropped)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f["name"] for f in features if f["name"] not in (reader.fieldnames or [])]
        if missing:
            raise BatchError(f"{path} lacks feature columns {missing}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row: dict[str, Any] = {}
            for feature in features:
                value = raw[feature["name"]]
                if feature["type"] == "numeric":
                    try:
                        number = float(value)
                    except ValueError:
                        raise BatchError(
                            f"{path}:{line}: {feature['name']} = {value!r} is not a number"
                        ) from None
                    row[feature["name"]] = int(number) if feature["integer"] else number
                else:
                    row[feature["name"]] = value
            rows.append(row)
    return rows


def run_batch(
    client: httpx.Client,
    model: str,
    instances: list[dict[str, Any]],
    out: Path,
    body_extra: dict[str, Any],
    on_progress: ProgressCallback,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Submit, follow progress until the job ends, stream its JSON lines into ``out``."""
    response = client.post(
        f"/v1/models/{model}/explain", json={"instances": instances, "wait": 0, **body_extra}
    )
    if response.status_code not in (200, 202):
        raise BatchError(f"HTTP {response.status_code}: {response.text}")
    job_id = response.json()["job_id"]
    follow_job(client, job_id, on_progress, poll_seconds)
    download(client, job_id, "jsonl", out)
    return {"job_id": job_id, "rows": len(instances)}


def follow_job(
    client: httpx.Client, job_id: str, on_progress: ProgressCallback, poll_seconds: float = 0.5
) -> dict[str, Any]:
    """Poll a job until it ends, reporting progress; raise unless it succeeded."""
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        on_progress(status["progress"], status["status"])
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(poll_seconds)
    if status["status"] != "succeeded":
        error = status.get("error") or {}
        raise BatchError(f"job {job_id} {status['status']}: {error.get('message', '')}")
    return status


def download(client: httpx.Client, job_id: str, fmt: str, out: Path) -> None:
    """Stream a finished job's result in ``fmt`` (json, jsonl, csv, notices) into ``out``."""
    with client.stream("GET", f"/v1/jobs/{job_id}/result", params={"format": fmt}) as body:
        if body.status_code != 200:
            raise BatchError(f"result ({fmt}): HTTP {body.status_code}: {body.read().decode()}")
        with out.open("wb") as handle:
            for chunk in body.iter_bytes():
                handle.write(chunk)


def run_notices(
    client: httpx.Client,
    model: str,
    csv_file: Path,
    out: Path,
    options: dict[str, Any],
    on_progress: ProgressCallback,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Upload a CSV of applicants for adverse-action notices; write results.jsonl,
    results.csv and one notice per denied applicant under ``out``/notices/."""
    with csv_file.open("rb") as handle:
        response = client.post(
            f"/v1/models/{model}/adverse-action/batch",
            files={"file": (csv_file.name, handle, "text/csv")},
            data={"options": json.dumps(options)},
        )
    if response.status_code not in (200, 202):
        raise BatchError(f"HTTP {response.status_code}: {response.text}")
    job_id = response.json()["job_id"]
    follow_job(client, job_id, on_progress, poll_seconds)
    out.mkdir(parents=True, exist_ok=True)
    download(client, job_id, "jsonl", out / "results.jsonl")
    download(client, job_id, "csv", out / "results.csv")
    notices = out / "notices"
    notices.mkdir(exist_ok=True)
    rows = denied = 0
    with (out / "results.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            rows += 1
            if row.get("notice"):
                denied += 1
                name = _safe_name(row.get("application_id") or f"applicant-{row['index']:05d}")
                (notices / f"{name}.txt").write_text(row["notice"])
    return {"job_id": job_id, "rows": rows, "denied": denied}


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100]
