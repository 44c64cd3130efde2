"""Build response bodies from a job's header and rows (used by any process that finishes
or reads a job)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel


def assemble(kind: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The response body of a finished predict/explain job: deterministic bytes.

    Rows are serialised as the workers produced them (every process assembles the same
    way, so the same job gives the same bytes); re-validating 10,000 rows through the
    response models would cost seconds. Conformance to the contract is tested instead.
    """
    if kind == "global":  # one task, one document: a section per method
        return orjson.dumps({**header, "results": rows[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
    key = {"predict": "predictions", "explain": "results", "adverse_action": "results"}.get(kind)
    if key is None:
        return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({**header, key: rows}, option=orjson.OPT_SERIALIZE_NUMPY)


def with_job_id(body: bytes, job_id: str) -> bytes:
    """A cached document (shared by every tenant, so it names no job) with the job id of
    the caller's job as its first member."""
    if not body.startswith(b"{"):
        return body
    rest = body[1:]
    return b'{"job_id":' + orjson.dumps(job_id) + (b"," if rest != b"}" else b"") + rest


def dump(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True, by_alias=True))
