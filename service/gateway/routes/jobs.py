"""Job status, result and cancellation."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from service.gateway import schemas
from service.gateway.deps import ExplainScope, Plane, error_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[ExplainScope])

JobId = Path(max_length=128)


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422),
)
async def get_job(plane: Plane, job_id: str = JobId) -> Response:
    """Status, progress 0-1, and the result or error of a job."""
    return Response(plane.job_status(job_id), media_type="application/json")


@router.delete(
    "/{job_id}",
    name="cancel_job",
    response_model=schemas.JobStatus,
    responses=error_responses(401, 403, 404, 422),
)
async def cancel_job(plane: Plane, job_id: str = JobId) -> Response:
    """Cancel a queued or running job (its worker process is stopped)."""
    return Response(plane.cancel(job_id), media_type="application/json")
