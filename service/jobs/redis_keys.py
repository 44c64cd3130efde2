"""Every Redis key and channel the service uses, in one place."""

from __future__ import annotations

PREFIX = "xai"
EVENTS_CHANNEL = f"{PREFIX}:job-events"  # message: "<job id> <its new status>"
STATS = f"{PREFIX}:stats"  # hash: jobs created/started/succeeded/failed/cancelled
ACTIVE = f"{PREFIX}:active"  # sorted set: ids of queued/running jobs, scored by creation time
OUTAGES = f"{PREFIX}:outages"  # list: JSON {start, end, seconds} of Redis outages, newest first
RECONCILER_LOCK = f"{PREFIX}:reconciler"  # string: the gateway that reconciles jobs now


def job(job_id: str) -> str:
    """Hash: kind, model, version, status, chunks, chunks_done, submission, queue,
    timestamps, error, header, resent."""
    return f"{PREFIX}:job:{job_id}"


def chunks(job_id: str) -> str:
    """Hash: chunk index -> JSON list of row results."""
    return f"{PREFIX}:chunks:{job_id}"


def specs(job_id: str) -> str:
    """Hash: chunk index -> JSON task spec of the job's current submission (messages on
    the broker carry only job id, submission and index; the reconciler can re-send)."""
    return f"{PREFIX}:specs:{job_id}"


def deliveries(job_id: str) -> str:
    """Hash: chunk index -> times a worker started it without it finishing (poison guard)."""
    return f"{PREFIX}:deliveries:{job_id}"


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
