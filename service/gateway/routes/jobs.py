"""Job status, result and cancellation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from service.gateway import schemas
from service.gateway.deps import ExplainScope, Plane, error_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[ExplainScope])

JobId = Path(max_length=200)


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_job(plane: Plane, job_id: str = JobId) -> Response:
    """Status, progress 0-1, and the result or error of a job."""
    return Response(await plane.job_status(job_id), media_type="application/json")


@router.get(
    "/{job_id}/result",
    name="get_job_result",
    response_model=schemas.ExplainResponse | schemas.PredictResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "The whole document (json) or one line per instance (jsonl)",
        },
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def get_job_result(
    plane: Plane,
    job_id: str = JobId,
    format: Literal["json", "jsonl"] = Query("json", description="json or jsonl (streamed)"),  # noqa: A002
) -> Response:
    """A finished job's result, whole or streamed as JSON lines."""
    if format == "jsonl":
        await plane.job_result(job_id)  # 404/409 before the stream starts
        return StreamingResponse(plane.job_result_lines(job_id), media_type="application/x-ndjson")
    return Response(await plane.job_result(job_id), media_type="application/json")


@router.delete(
    "/{job_id}",
    name="cancel_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def cancel_job(plane: Plane, job_id: str = JobId) -> Response:
    """Cancel a queued or running job (its worker process is stopped)."""
    return Response(await plane.cancel(job_id), media_type="application/json")
