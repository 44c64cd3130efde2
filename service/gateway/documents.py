"""Build response bodies from a job's header and rows (used by any process that finishes
or reads a job)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from service.gateway import schemas


def assemble(kind: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The response body of a finished predict/explain job: deterministic bytes."""
    if kind == "predict":
        return dump(
            schemas.PredictResponse(**header, predictions=[schemas.Prediction(**r) for r in rows])
        )
    if kind == "explain":
        return dump(
            schemas.ExplainResponse(
                **header, results=[schemas.InstanceExplanation(**r) for r in rows]
            )
        )
    return orjson.dumps(rows)


def dump(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True, by_alias=True))
