"""Plots of finished jobs, as SVG (default) or PNG."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response

from service.gateway.auth import CurrentCaller
from service.gateway.body import JsonRoute
from service.gateway.dataplane import DataPlane
from service.gateway.deps import ExplainScope, Plane, error_responses
from service.gateway.tenancy import Caller
from service.plots import MEDIA_TYPES, PlotFormat, render

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/plots", tags=["plots"], dependencies=[ExplainScope]
)

JobQuery = Annotated[str, Query(max_length=200, description="A finished job's id.")]
FormatQuery = Annotated[PlotFormat, Query(description="svg (default) or png")]
FeatureQuery = Annotated[
    str | None, Query(max_length=200, description="Feature to draw; default the first computed.")
]
TopQuery = Annotated[int, Query(ge=1, le=50, description="Features shown.")]
IMAGE = {
    200: {
        "content": {
            "image/svg+xml": {"schema": {"type": "string"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "The plot",
    },
    **error_responses(401, 403, 404, 409, 422, 503),
}


async def _plot(
    plane: DataPlane, caller: Caller, job_id: str, kind: str, fmt: PlotFormat, **params: Any
) -> Response:
    body = await plane.job_result(job_id, caller)
    document = await asyncio.to_thread(orjson.loads, body)
    image = await asyncio.to_thread(render, kind, document, fmt, **params)
    return Response(image, media_type=MEDIA_TYPES[fmt])


@router.get("/waterfall", name="plot_waterfall", response_class=Response, responses=IMAGE)
async def plot_waterfall(
    plane: Plane,
    caller: CurrentCaller,
    job_id: JobQuery,
    index: Annotated[int, Query(ge=0, description="Instance (applicant) of the job.")] = 0,
    top: TopQuery = 10,
    format: FormatQuery = "svg",  # noqa: A002
) -> Response:
    """Waterfall of one instance's SHAP values: of an explain job with 'shap' (against the
    reference rows), or of an adverse-action job (against its policy baseline, the values
    its reasons are made of). The title names the decision and the class its probability
    is of."""
    return await _plot(plane, caller, job_id, "waterfall", format, index=index, top=top)


@router.get("/importance", name="plot_importance", response_class=Response, responses=IMAGE)
async def plot_importance(
    plane: Plane,
    caller: CurrentCaller,
    job_id: JobQuery,
    method: Annotated[
        str | None,
        Query(
            pattern="^(permutation_importance|shap_importance)$",
            description="Default: permutation importance when the job has it.",
        ),
    ] = None,
    top: TopQuery = 15,
    format: FormatQuery = "svg",  # noqa: A002
) -> Response:
    """Bar chart of global importance (permutation mean ± std, or mean |SHAP|)."""
    return await _plot(plane, caller, job_id, "importance", format, method=method, top=top)


@router.get("/beeswarm", name="plot_beeswarm", response_class=Response, responses=IMAGE)
async def plot_beeswarm(
    plane: Plane,
    caller: CurrentCaller,
    job_id: JobQuery,
    top: TopQuery = 12,
    format: FormatQuery = "svg",  # noqa: A002
) -> Response:
    """SHAP value of every row per feature, coloured by the feature's value."""
    return await _plot(plane, caller, job_id, "beeswarm", format, top=top)


@router.get("/pdp", name="plot_pdp", response_class=Response, responses=IMAGE)
async def plot_pdp(
    plane: Plane,
    caller: CurrentCaller,
    job_id: JobQuery,
    feature: FeatureQuery = None,
    format: FormatQuery = "svg",  # noqa: A002
) -> Response:
    """Partial dependence of one feature, over its ICE curves when the job has them."""
    return await _plot(plane, caller, job_id, "pdp", format, feature=feature)


@router.get("/ale", name="plot_ale", response_class=Response, responses=IMAGE)
async def plot_ale(
    plane: Plane,
    caller: CurrentCaller,
    job_id: JobQuery,
    feature: FeatureQuery = None,
    format: FormatQuery = "svg",  # noqa: A002
) -> Response:
    """Accumulated local effects of one numeric feature, centred."""
    return await _plot(plane, caller, job_id, "ale", format, feature=feature)
