"""Content keys: one request is one job and one cache entry."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

SEED_MODULUS = 2**32


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace; floats in shortest round-trip form."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_key(
    model_hash: str,
    kind: str,
    methods: list[str],
    options: dict[str, Any],
    instances: list[dict[str, Any]],
) -> str:
    """sha256 over (model version content hash, kind, methods, canonical options, instances)."""
    payload = {
        "model": model_hash,
        "kind": kind,
        "methods": methods,
        "options": options,
        "instances": instances,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def tenant_key(key: str, tenant: str) -> str:
    """The content key of work that belongs to one tenant even when another tenant asks
    for the same (adverse-action decisions: each names its tenant's receipts)."""
    return hashlib.sha256(f"{key}\0{tenant}".encode()).hexdigest()


def derived_seed(key: str) -> int:
    """The default seed of a request: a stable function of its content key."""
    return int(key[:16], 16) % SEED_MODULUS


def row_seed(seed: int, index: int) -> int:
    """Seed of instance ``index`` of a request, independent of how it is chunked."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()
    return int(digest[:16], 16) % SEED_MODULUS
