"""Every Redis key and channel the service uses, in one place."""

from __future__ import annotations

PREFIX = "xai"
EVENTS_CHANNEL = f"{PREFIX}:job-events"  # message: a job id whose state changed
STATS = f"{PREFIX}:stats"  # hash: jobs created/started/succeeded/failed/cancelled


def job(job_id: str) -> str:
    """Hash: kind, model, version, status, chunks, chunks_done, timestamps, error, header."""
    return f"{PREFIX}:job:{job_id}"


def chunks(job_id: str) -> str:
    """Hash: chunk index -> JSON list of row results."""
    return f"{PREFIX}:chunks:{job_id}"


def attempts(job_id: str) -> str:
    """Hash: chunk index -> deliveries so far (poison-message guard)."""
    return f"{PREFIX}:attempts:{job_id}"


def result(job_id: str) -> str:
    """String: the finished response body (the result cache)."""
    return f"{PREFIX}:result:{job_id}"


def receipt(receipt_id: str) -> str:
    """String: one adverse-action receipt (JSON); no TTL unless retention is set."""
    return f"{PREFIX}:receipt:{receipt_id}"


def receipts_by_version(version_id: str) -> str:
    """Sorted set: ids of the receipts that refer to a model version (guards its deletion),
    scored by when each expires (+inf: kept forever), so expired ones can be pruned."""
    return f"{PREFIX}:receipts-by-version:{version_id}"


def receipts_of_version(version_id: str) -> str:
    """Set: the same index as written before it was a sorted set; read, never written."""
    return f"{PREFIX}:receipts-of:{version_id}"
