"""Submit a CSV of applicants as one batch job over HTTP and collect its results."""

from __future__ import annotations

import csv
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
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        on_progress(status["progress"], status["status"])
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(poll_seconds)
    if status["status"] != "succeeded":
        error = status.get("error") or {}
        raise BatchError(f"job {job_id} {status['status']}: {error.get('message', '')}")
    with client.stream("GET", f"/v1/jobs/{job_id}/result", params={"format": "jsonl"}) as lines:
        if lines.status_code != 200:
            raise BatchError(f"result: HTTP {lines.status_code}")
        with out.open("wb") as handle:
            for chunk in lines.iter_bytes():
                handle.write(chunk)
    return {"job_id": job_id, "rows": len(instances)}
