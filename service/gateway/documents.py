"""Build response bodies from a job's header and rows (used by any process that finishes
or reads a job)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

ROWS_KEY = {"predict": "predictions", "explain": "results", "adverse_action": "results"}


def assemble(kind: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The response body of a finished predict/explain job: deterministic bytes.

    Rows are serialised as the workers produced them (every process assembles the same
    way, so the same job gives the same bytes); re-validating 10,000 rows through the
    response models would cost seconds. Conformance to the contract is tested instead.
    """
    if kind == "global":  # one task, one document: a section per method
        return orjson.dumps({**header, "results": rows[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
    key = ROWS_KEY.get(kind)
    if key is None:
        return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({**header, key: rows}, option=orjson.OPT_SERIALIZE_NUMPY)


def splice(kind: str, header: bytes, parts: list[bytes]) -> bytes | None:
    """:func:`assemble` of rows that are already JSON (the header as ``orjson.dumps`` wrote
    it, each part a JSON array of rows, in order), joined without parsing them again:
    the same bytes. None for a kind whose document is not header + rows."""
    key = ROWS_KEY.get(kind)
    if key is None or not header.startswith(b"{"):
        return None
    opening = header[:-1] + (b"," if header != b"{}" else b"")
    pieces: list[bytes | memoryview] = [opening, orjson.dumps(key), b":["]
    for part in parts:
        if part != b"[]":
            pieces += (memoryview(part)[1:-1], b",")
    if pieces[-1] == b",":
        pieces.pop()
    pieces.append(b"]}")
    return b"".join(pieces)  # one copy of the rows, however many chunks


def with_job_id(body: bytes, job_id: str) -> bytes:
    """A cached document (shared by every tenant, so it names no job) with the job id of
    the caller's job as its first member."""
    if not body.startswith(b"{"):
        return body
    separator = b"," if body != b"{}" else b""
    return b"".join((b'{"job_id":', orjson.dumps(job_id), separator, memoryview(body)[1:]))


def dump(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True, by_alias=True))
