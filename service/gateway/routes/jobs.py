"""Job status, result and cancellation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from service.gateway import schemas
from service.gateway.auth import CurrentCaller
from service.gateway.body import JsonRoute
from service.gateway.deps import ExplainScope, Plane, error_responses
from service.gateway.routes.decisions import Decide

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/jobs", tags=["jobs"], dependencies=[ExplainScope]
)

JobId = Path(max_length=200)


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_job(plane: Plane, caller: CurrentCaller, job_id: str = JobId) -> Response:
    """Status, progress 0-1, and the result or error of a job (its tenant's only)."""
    return Response(await plane.job_status(job_id, caller), media_type="application/json")


@router.get(
    "/{job_id}/result",
    name="get_job_result",
    response_model=schemas.ExplainResponse
    | schemas.PredictResponse
    | schemas.GlobalResponse
    | schemas.AdverseActionBatchResult,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
            "description": "The whole document (json), one line per instance (jsonl), or for "
            "adverse-action jobs a CSV table or the notices as text",
        },
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def get_job_result(
    plane: Plane,
    decisions: Decide,
    caller: CurrentCaller,
    job_id: str = JobId,
    format: Literal["json", "jsonl", "csv", "notices"] = Query(  # noqa: A002
        "json",
        description="json, jsonl (streamed), or for adverse-action jobs csv (one row per "
        "applicant) and notices (plain text, one notice per denial, form-feed separated)",
    ),
) -> Response:
    """A finished job's result, whole or streamed as JSON lines."""
    if format == "csv":
        return Response(await decisions.table(job_id, caller), media_type="text/csv")
    if format == "notices":
        notices = await decisions.notices(job_id, caller)
        return Response(notices, media_type="text/plain; charset=utf-8")
    if format == "jsonl":
        await plane.job_result(job_id, caller)  # 404/409 before the stream starts
        lines = plane.job_result_lines(job_id, caller)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    return Response(await plane.job_result(job_id, caller), media_type="application/json")


@router.delete(
    "/{job_id}",
    name="cancel_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def cancel_job(plane: Plane, caller: CurrentCaller, job_id: str = JobId) -> Response:
    """Cancel a queued or running job (its worker process is stopped)."""
    return Response(await plane.cancel(job_id, caller), media_type="application/json")
