"""Global explanations: what a model relies on over many rows."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.gateway import schemas
from service.gateway.auth import CurrentCaller
from service.gateway.body import JsonRoute
from service.gateway.deps import ExplainScope, Plane, VersionQuery, error_responses, respond
from service.gateway.routes.inference import ACCEPTED, CACHE_HEADER

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/models", tags=["global"], dependencies=[ExplainScope]
)


@router.post(
    "/{name}/global",
    name="explain_global",
    response_model=schemas.GlobalResponse,
    responses={
        200: {"headers": CACHE_HEADER},
        **ACCEPTED,
        **error_responses(400, 401, 403, 404, 413, 422, 503, 504),
    },
)
async def explain_global(
    name: str,
    body: schemas.GlobalRequest,
    plane: Plane,
    caller: CurrentCaller,
    version: VersionQuery = None,
) -> Response:
    """Permutation importance, mean |SHAP|, PDP/ICE and ALE as one job on the batch queue."""
    return respond(await plane.global_explanation(name, version, body, caller))
