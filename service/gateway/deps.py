"""Typed dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from service.gateway import schemas
from service.gateway.auth import require
from service.gateway.dataplane import DataPlane, Outcome
from service.settings import Scope


async def get_dataplane(request: Request) -> DataPlane:  # async: no thread hop
    return request.app.state.dataplane


Plane = Annotated[DataPlane, Depends(get_dataplane)]
VersionQuery = Annotated[
    str | None,
    Query(max_length=64, description="Pin a version id (or unique prefix); default latest."),
]
ExplainScope = Depends(require(Scope.explain))
AdminScope = Depends(require(Scope.admin))


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    descriptions = {
        400: "The body cannot be parsed (not UTF-8 JSON, or malformed multipart)",
        401: "Missing or invalid API key",
        403: "API key lacks the scope",
        404: "Unknown model, version or job",
        409: "Conflict",
        413: "Body or batch too large",
        422: "Invalid request; each issue names its location",
        503: "Not ready or unavailable",
        504: "The job exceeded its hard time limit",
    }
    job_header = {
        "X-Job-Id": {
            "description": "The failed job, when a job failed",
            "schema": {"type": "string"},
        }
    }
    return {
        code: {
            "model": schemas.ValidationErrorResponse if code == 422 else schemas.ErrorResponse,
            "description": descriptions[code],
            **({"headers": job_header} if code in (422, 504) else {}),
        }
        for code in codes
    }


def respond(outcome: Outcome) -> Response:
    headers = {"Location": outcome.location} if outcome.status == 202 else {}
    if outcome.cache:
        headers["X-Cache"] = outcome.cache
    return Response(
        outcome.body, status_code=outcome.status, media_type="application/json", headers=headers
    )
