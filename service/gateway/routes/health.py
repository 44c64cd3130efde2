"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.gateway import schemas

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", name="healthz", response_model=schemas.Health, response_model_exclude_none=True
)
async def healthz() -> schemas.Health:
    """Liveness: the process answers."""
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    name="readyz",
    response_model=schemas.Health,
    responses={503: {"model": schemas.Health, "description": "Not ready yet"}},
)
async def readyz(request: Request) -> Response:
    """Readiness: models loaded and the executor (worker pool, or Redis) reachable."""
    plane = request.app.state.dataplane
    problem = "starting" if plane is None else await plane.problem()
    if problem is not None:
        detail = getattr(request.app.state, "startup_error", None) or problem
        return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ready", "models": len(plane.store.names())})


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        }
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
