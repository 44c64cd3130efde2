"""Model listing, description and registration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from service.errors import invalid
from service.gateway import schemas
from service.gateway.body import JsonRoute
from service.gateway.deps import (
    AdminScope,
    ExplainScope,
    Plane,
    VersionQuery,
    error_responses,
)
from service.registry.manifest_text import MAX_MANIFEST_BYTES

router = APIRouter(route_class=JsonRoute, prefix="/v1/models", tags=["models"])


@router.get(
    "",
    name="list_models",
    response_model=schemas.ModelList,
    dependencies=[ExplainScope],
    responses=error_responses(401, 403),
)
async def list_models(plane: Plane) -> schemas.ModelList:
    """Registered models and their versions."""
    return plane.list_models()


@router.get(
    "/{name}",
    name="get_model",
    response_model=schemas.ModelDetail,
    dependencies=[ExplainScope],
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_model(name: str, plane: Plane, version: VersionQuery = None) -> schemas.ModelDetail:
    """A version's feature schema, supported methods and metadata."""
    return await plane.model_detail(name, version)


@router.post(
    "",
    name="register_model",
    response_model=schemas.RegisteredModel,
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminScope],
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "examples": {
                        "demo": {
                            "summary": "The files of a model version folder",
                            "description": "curl -F manifest=@manifest.yaml "
                            "-F artifact=@model.skops -F reference=@reference.csv "
                            "-F evaluation=@evaluation.csv http://127.0.0.1:8000/v1/models",
                            "value": {
                                "manifest": "(contents of manifest.yaml)",
                                "artifact": "(contents of model.skops)",
                                "reference": "(contents of reference.csv)",
                                "evaluation": "(contents of evaluation.csv)",
                            },
                        }
                    }
                }
            }
        }
    },
    responses={
        200: {"model": schemas.RegisteredModel, "description": "Already registered"},
        **error_responses(400, 401, 403, 409, 413, 422, 503),
    },
)
async def register_model(
    plane: Plane,
    manifest: Annotated[UploadFile, File(description="manifest.yaml (YAML or JSON)")],
    reference: Annotated[UploadFile, File(description="Reference rows (CSV)")],
    artifact: Annotated[
        UploadFile | None,
        File(
            description="skops, XGBoost JSON/UBJ or LightGBM text; none for a remote model "
            "(artifact.format: remote), whose endpoint is fingerprinted instead"
        ),
    ] = None,
    evaluation: Annotated[UploadFile | None, File(description="Evaluation rows (CSV)")] = None,
) -> Response:
    """Register a new immutable version (admin scope); the answer is its registration
    report. Refused with 422, each issue located: pickle/joblib, data files that do not fit
    the manifest (file, row, column), a classifier whose scores rank the labelled rows
    backwards (ROC AUC < 0.5: the class order is likely inverted), TODO placeholders.
    A remote model (no artifact file) is scored through its endpoint and registered with
    the fingerprint of its answers; an unreachable or misbehaving endpoint is refused."""
    if manifest.size is not None and manifest.size > MAX_MANIFEST_BYTES:
        raise invalid(
            ("body", "manifest"),
            f"is {manifest.size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}",
            "too_long",
        )
    uploads = {"reference": await reference.read()}
    if artifact is not None:
        uploads["artifact"] = await artifact.read()
    if evaluation is not None:
        uploads["evaluation"] = await evaluation.read()
    registered = await plane.register(await manifest.read(), uploads)
    return Response(
        registered.model_dump_json(),
        media_type="application/json",
        status_code=201 if registered.created else 200,
    )
