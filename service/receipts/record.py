"""What a receipt holds, the content key its id derives from, and how a replay is
compared with it."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from service.jobs.keys import canonical_json

if TYPE_CHECKING:
    from service.registry.loaded import LoadedModel

RECEIPT_PREFIX = "rcpt_"
MAX_DIFFERENCES = 50


def receipt_request(
    applicant: dict[str, Any], application_id: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """The request a receipt records (and its id derives from) for one applicant."""
    return {"applicant": applicant, "application_id": application_id or None, "options": options}


def receipt_key(
    job_key: str, index: int, content_hash: str, request: dict[str, Any], seed: int
) -> str:
    """sha256 over what one decision was computed from: the job's content key and the
    applicant's position in it, the model version, the request and the job's seed. The
    receipt id is a keyed hash of this (see ``service.gateway.handles``)."""
    payload = {
        "job": job_key,
        "index": index,
        "model": content_hash,
        "request": request,
        "seed": seed,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def stored_receipt_key(receipt: dict[str, Any]) -> str:
    """The content key of a stored receipt, from its own fields (KeyError if missing)."""
    return receipt_key(
        receipt["content_key"],
        receipt["index"],
        receipt["content_hash"],
        receipt["request"],
        receipt["seed"],
    )


def build_receipt(
    model: LoadedModel,
    tenant: str,
    job_id: str,
    job_key: str,
    index: int,
    seed: int,
    request: dict[str, Any],
    document: dict[str, Any],
) -> dict[str, Any]:
    """Everything needed to replay one decision: model identity, tenant, request, seeds,
    response (unsigned; see ``service.receipts.signing``)."""
    version = model.version
    fingerprint = model.predictor.fingerprint()
    return {
        "receipt_id": document["receipt_id"],
        "tenant": tenant,
        "issued_at": time.time(),
        "model": version.name,
        "version": version.version_id,
        "content_hash": version.content_hash,
        "manifest_hash": version.manifest_hash,
        "job_id": job_id,
        "content_key": job_key,
        "index": index,
        "seed": seed,
        "row_seed": document["evidence"]["seed"],
        "request": request,
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
