"""Predict and explain."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.gateway import schemas
from service.gateway.auth import CurrentCaller
from service.gateway.body import JsonRoute
from service.gateway.deps import ExplainScope, Plane, VersionQuery, error_responses, respond

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/models", tags=["inference"], dependencies=[ExplainScope]
)

CACHE_HEADER = {
    "X-Cache": {
        "description": "hit: this tenant made the same request before and it is served "
        "from the result cache; miss: the tenant's first answer (computed, or shared with "
        "identical work, which is never disclosed)",
        "schema": {"type": "string", "enum": ["hit", "miss"]},
    }
}
ACCEPTED = {
    202: {
        "model": schemas.JobAccepted,
        "description": "Not done within `wait`; poll Location",
        "headers": {"Location": {"description": "The job's URL", "schema": {"type": "string"}}},
    }
}


@router.post(
    "/{name}/predict",
    name="predict",
    response_model=schemas.PredictResponse,
    responses={
        200: {"headers": CACHE_HEADER},
        **ACCEPTED,
        **error_responses(400, 401, 403, 404, 413, 422, 503, 504),
    },
)
async def predict(
    name: str,
    body: schemas.PredictRequest,
    plane: Plane,
    caller: CurrentCaller,
    version: VersionQuery = None,
) -> Response:
    """Decision (label) and probability of the favourable class for each instance."""
    return respond(await plane.predict(name, version, body, caller))


@router.post(
    "/{name}/explain",
    name="explain",
    response_model=schemas.ExplainResponse,
    responses={
        200: {"headers": CACHE_HEADER},
        **ACCEPTED,
        **error_responses(400, 401, 403, 404, 413, 422, 503, 504),
    },
)
async def explain(
    name: str,
    body: schemas.ExplainRequest,
    plane: Plane,
    caller: CurrentCaller,
    version: VersionQuery = None,
) -> Response:
    """Prediction and explanations (SHAP per raw feature, with evidence) per instance."""
    return respond(await plane.explain(name, version, body, caller))
