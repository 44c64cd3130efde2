"""What a worker task is: plain JSON-able data, so any transport can carry it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class TaskKind(StrEnum):
    predict = "predict"
    explain = "explain"
    adverse_action = "adverse_action"
    global_ = "global"  # one task: a global explanation over many rows
    describe = "describe"
    validate = "validate"
    ping = "ping"


class TaskSpec(TypedDict, total=False):
    """One unit of work for a worker process."""

    kind: str
    models_dir: str
    model: str
    version: str
    instances: list[dict[str, Any]]
    methods: list[str]
    options: dict[str, Any]
    seed: int
    offset: int  # index of the first instance in the whole request
    job_id: str  # the job's id (its tenant's handle; the backend keys the job by it)
    content_key: str  # adverse_action: the job's content key, recorded in receipts
    tenant: str  # adverse_action: who the receipts belong to
    application_ids: list[str | None]  # adverse_action: the lender's id per instance
    receipt_ids: list[str]  # adverse_action: the id of each instance's receipt
    receipts: str  # adverse_action: receipt store location; absent when replaying
    receipt_retention: float | None  # seconds a receipt is kept (None: forever)
    folder: str  # validate: staging folder of a candidate version
    source: str
    timeout: float  # validate: seconds the isolated check may take


class TaskResult(TypedDict, total=False):
    """A task's outcome: ``results`` on success, ``error`` (an error payload) on failure."""

    results: list[dict[str, Any]]
    description: dict[str, Any]
    error: dict[str, Any]
    rows_json: bytes  # the rows (results, or [description]) as one JSON array, encoded
