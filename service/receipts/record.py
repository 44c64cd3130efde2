"""What a receipt holds, how its id is derived, and how a replay is compared with it."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from service.registry.loaded import LoadedModel

RECEIPT_PREFIX = "rcpt_"
ID_HEX = 32
MAX_DIFFERENCES = 50


def receipt_id(job_id: str, index: int) -> str:
    """Derived from the request's content key and the applicant's position in it, so the
    same request always names the same receipt (and a replay can be checked against it)."""
    digest = hashlib.sha256(f"{job_id}:{index}".encode()).hexdigest()
    return RECEIPT_PREFIX + digest[:ID_HEX]


def build_receipt(
    model: LoadedModel,
    job_id: str,
    index: int,
    seed: int,
    applicant: dict[str, Any],
    options: dict[str, Any],
    document: dict[str, Any],
) -> dict[str, Any]:
    """Everything needed to replay one decision: model identity, request, seeds, response."""
    version = model.version
    fingerprint = model.predictor.fingerprint()
    return {
        "receipt_id": document["receipt_id"],
        "issued_at": time.time(),
        "model": version.name,
        "version": version.version_id,
        "content_hash": version.content_hash,
        "manifest_hash": version.manifest_hash,
        "job_id": job_id,
        "index": index,
        "seed": seed,
        "row_seed": document["evidence"]["seed"],
        "request": {
            "applicant": applicant,
            "application_id": document.get("application_id"),
            "options": options,
        },
        "baseline": document["baseline"],
        "response": document,
        # a remote model: the fingerprint of the endpoint's answers it was decided with
        **({"fingerprint": fingerprint} if fingerprint is not None else {}),
    }


def differences(stored: Any, replayed: Any, path: str = "") -> list[dict[str, Any]]:
    """Where two JSON documents differ: one entry per differing leaf (path, both values)."""
    found: list[dict[str, Any]] = []
    _walk(stored, replayed, path, found)
    return found[:MAX_DIFFERENCES]


def _walk(a: Any, b: Any, path: str, found: list[dict[str, Any]]) -> None:
    if len(found) >= MAX_DIFFERENCES:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key), found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", found)
    elif a != b or type(a) is not type(b):
        found.append({"path": path or "$", "stored": a, "replayed": b})
