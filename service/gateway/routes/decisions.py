"""Adverse-action decisions, batch notices, receipts, and deleting a model version."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema

from service.errors import InvalidRequestError, Issue
from service.explainers.base import CONSTRAINTS
from service.gateway import adverse_schemas as aa
from service.gateway.auth import CurrentCaller
from service.gateway.body import JsonRoute, parse
from service.gateway.decisions import Decisions, applicants_from_csv, require_classifier
from service.gateway.deps import (
    AdminScope,
    ExplainScope,
    VersionQuery,
    error_responses,
    respond,
)
from service.gateway.receipts import Receipts
from service.gateway.routes.inference import ACCEPTED, CACHE_HEADER
from service.gateway.schemas import APPLICANT_EXAMPLE


async def get_decisions(request: Request) -> Decisions:
    return request.app.state.decisions


async def get_receipts(request: Request) -> Receipts:
    return request.app.state.receipts


Decide = Annotated[Decisions, Depends(get_decisions)]
ReceiptBook = Annotated[Receipts, Depends(get_receipts)]
ReceiptId = Path(max_length=100)

router = APIRouter(route_class=JsonRoute, tags=["adverse action"])

# The batch body is read by hand (JSON or multipart); its JSON schema still belongs in the
# contract's components.
_, _batch_schemas = models_json_schema(
    [(aa.AdverseActionBatchRequest, "validation")], ref_template="#/components/schemas/{model}"
)
EXTRA_SCHEMAS: dict[str, Any] = _batch_schemas["$defs"]

BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/AdverseActionBatchRequest"},
            "example": {"applicants": [APPLICANT_EXAMPLE], "options": {"max_reasons": 4}},
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "CSV: one column per feature, optional application_id",
                        CONSTRAINTS: "UTF-8 CSV with a header row: a column per feature of "
                        "the model, each value matching its feature schema",
                    },
                    "options": {
                        "type": "string",
                        "description": "AdverseActionOptions as a JSON string",
                        CONSTRAINTS: "a JSON object valid as AdverseActionOptions",
                    },
                },
            },
            "examples": {
                "csv": {
                    "summary": "A CSV of applicants",
                    "description": "curl -F file=@applicants.csv -F 'options={\"max_reasons\": 4}' "
                    "http://127.0.0.1:8000/v1/models/german-credit/adverse-action/batch",
                    "value": {
                        "file": "(contents of applicants.csv: application_id + feature columns)",
                        "options": '{"max_reasons": 4}',
                    },
                }
            },
        },
    },
}


@router.post(
    "/v1/models/{name}/adverse-action",
    name="adverse_action",
    dependencies=[ExplainScope],
    response_model=aa.AdverseActionResponse,
    responses={
        200: {"headers": CACHE_HEADER},
        **ACCEPTED,
        **error_responses(400, 401, 403, 404, 422, 503, 504),
    },
)
async def adverse_action(
    name: str,
    body: aa.AdverseActionRequest,
    decisions: Decide,
    caller: CurrentCaller,
    version: VersionQuery = None,
) -> Response:
    """Decision, principal reasons (for a denial), recourse, evidence and a receipt id."""
    return respond(await decisions.decide(name, version, body, caller))


@router.post(
    "/v1/models/{name}/adverse-action/batch",
    name="adverse_action_batch",
    dependencies=[ExplainScope],
    response_model=aa.AdverseActionBatchResult,
    openapi_extra={"requestBody": BATCH_BODY},
    responses={
        **ACCEPTED,
        **error_responses(400, 401, 403, 404, 413, 422, 503, 504),
    },
)
async def adverse_action_batch(
    name: str,
    request: Request,
    decisions: Decide,
    caller: CurrentCaller,
    version: VersionQuery = None,
) -> Response:
    """Decisions and notices for many applicants (JSON list or CSV upload) as one batch job;
    results as JSON, JSON lines, CSV or plain-text notices from ``/v1/jobs/{id}/result``."""
    manifest = decisions.plane.store.get(name, version).manifest
    require_classifier(manifest)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError(
                [Issue(("body", "file"), "a CSV file is required", "missing")]
            )
        data = await upload.read()
        applicants, ids = await asyncio.to_thread(applicants_from_csv, manifest, data)
        raw_options = form.get("options") or "{}"
        if not isinstance(raw_options, str):
            raise InvalidRequestError(
                [Issue(("body", "options"), "must be a form field holding JSON, not a file")]
            )
        options = await _json(raw_options, "options")
        body = _parse({"applicants": applicants, "options": options})
    else:
        body = _parse(await _json(await request.body(), None))
        ids = body.application_ids  # type: ignore[assignment]
    outcome = await decisions.decide_batch(
        name, version, body.applicants, ids, body.options, body.wait, caller
    )
    return respond(outcome)


@router.get(
    "/v1/receipts/keys",
    name="receipt_keys",
    dependencies=[ExplainScope],
    response_model=aa.ReceiptKeys,
    responses=error_responses(401, 403, 503),
)
async def receipt_keys(receipts: ReceiptBook) -> Response:
    """The public keys that verify receipt signatures (current and rotated out), for
    verifying exported receipts offline."""
    return Response(orjson.dumps(receipts.keys()), media_type="application/json")


@router.get(
    "/v1/receipts/{receipt_id}",
    name="get_receipt",
    dependencies=[ExplainScope],
    response_model=aa.Receipt,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_receipt(
    receipts: ReceiptBook, caller: CurrentCaller, receipt_id: str = ReceiptId
) -> Response:
    """The stored, signed record of one adverse-action response (its tenant's only)."""
    return Response(
        orjson.dumps(await receipts.get(receipt_id, caller)), media_type="application/json"
    )


@router.post(
    "/v1/receipts/{receipt_id}/verify",
    name="verify_receipt",
    dependencies=[ExplainScope],
    response_model=aa.ReceiptVerification,
    responses=error_responses(401, 403, 404, 409, 422, 503, 504),
)
async def verify_receipt(
    receipts: ReceiptBook, caller: CurrentCaller, receipt_id: str = ReceiptId
) -> aa.ReceiptVerification:
    """Check the signature, re-derive the id from the stored request, then recompute the
    decision with the same version and seeds: ``match`` or what differs."""
    return await receipts.verify(receipt_id, caller)


@router.delete(
    "/v1/models/{name}/versions/{version_id}",
    name="delete_model_version",
    dependencies=[AdminScope],
    status_code=204,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def delete_model_version(
    name: str, decisions: Decide, version_id: str = Path(max_length=64)
) -> Response:
    """Delete a version (admin scope); refused (409) while receipts refer to it."""
    await decisions.delete_version(name, version_id)
    return Response(status_code=204)


async def _json(raw: bytes | str, field: str | None) -> Any:
    loc = ("body", field) if field else ("body",)
    try:
        return await parse(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError([Issue(loc, f"not valid JSON: {exc}", "json_invalid")]) from exc


def _parse(raw: Any) -> aa.AdverseActionBatchRequest:
    try:
        return aa.AdverseActionBatchRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequestError(
            [Issue(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        ) from exc
