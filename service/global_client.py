"""Run a global explanation over HTTP, follow its progress and save its plots to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from service.batch_client import BatchError, ProgressCallback, follow_job

CURVES = ("pdp", "ice", "ale")


def global_body(
    methods: list[str],
    features: list[str] | None,
    numeric: set[str],
    seed: int | None,
) -> dict[str, Any]:
    """The request: ``features`` (if any) for the curve methods; ALE gets the numeric ones."""
    options: dict[str, Any] = {} if seed is None else {"seed": seed}
    if features:
        for method in CURVES:
            chosen = [f for f in features if f in numeric] if method == "ale" else features
            if method in methods and chosen:
                options[method] = {"features": chosen}
    return {"methods": methods, "options": options, "wait": 0}


def run_global_job(
    client: httpx.Client,
    model: str,
    body: dict[str, Any],
    on_progress: ProgressCallback,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Submit, follow the job until it ends, return its result document."""
    response = client.post(f"/v1/models/{model}/global", json=body)
    if response.status_code not in (200, 202):
        raise BatchError(f"HTTP {response.status_code}: {response.text}")
    status = follow_job(client, response.json()["job_id"], on_progress, poll_seconds)
    return dict(status["result"])


def plot_requests(document: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(file stem, plot kind, query) for every plot the document can draw."""
    results = document["results"]
    wanted: list[tuple[str, str, dict[str, str]]] = []
    for method in ("permutation_importance", "shap_importance"):
        if results.get(method):
            wanted.append((f"importance-{method}", "importance", {"method": method}))
    if results.get("shap_importance"):
        wanted.append(("beeswarm", "beeswarm", {}))
    curves = results.get("ice") or results.get("pdp")
    for entry in (curves or {}).get("features", []):
        wanted.append((f"pdp-{entry['feature']}", "pdp", {"feature": entry["feature"]}))
    for entry in (results.get("ale") or {}).get("features", []):
        wanted.append((f"ale-{entry['feature']}", "ale", {"feature": entry["feature"]}))
    return wanted


def save_plots(
    client: httpx.Client, document: dict[str, Any], out: Path, fmt: str = "svg"
) -> list[Path]:
    """Download each plot of the job into ``out`` (with the result as result.json)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(document, indent=1))
    written = []
    for stem, kind, query in plot_requests(document):
        params = {"job_id": document["job_id"], "format": fmt, **query}
        response = client.get(f"/v1/plots/{kind}", params=params)
        if response.status_code != 200:
            raise BatchError(f"plot {stem}: HTTP {response.status_code}: {response.text}")
        path = out / f"{stem}.{fmt}"
        path.write_bytes(response.content)
        written.append(path)
    return written
