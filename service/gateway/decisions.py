"""The data plane of adverse-action decisions, batch notices and the deletion of model
versions (refused while receipts refer to them)."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import TYPE_CHECKING, Any

import orjson

from service.adverse.options import NEEDS_CLASSIFIER, AdverseActionOptions, request_issues
from service.errors import ConflictError, InvalidRequestError, Issue, invalid
from service.gateway import adverse_schemas as aa
from service.gateway.dataplane import BATCH, INLINE_VALIDATION_ROWS, Outcome, job_header
from service.gateway.receipts import Receipts
from service.gateway.tenancy import Caller
from service.jobs.keys import content_key, derived_seed, tenant_key
from service.jobs.spec import TaskKind
from service.receipts.record import receipt_key, receipt_request
from service.registry.manifest import Manifest, Task
from service.registry.schema import validate_instance
from service.registry.store import ModelVersion

if TYPE_CHECKING:
    from service.gateway.dataplane import DataPlane

KIND = TaskKind.adverse_action.value
APPLICATION_ID = "application_id"
MAX_CSV_ISSUES = 50


class Decisions:
    """Adverse-action requests on top of the shared job path (cache, queues, chunks).

    A decision names its tenant's receipt, so the tenant is part of its content key: two
    tenants deciding the same applicant get two jobs and two receipts (with the same
    decision: the default seed comes from the tenant-free key)."""

    def __init__(self, plane: DataPlane, receipts: Receipts) -> None:
        self.plane, self.receipts = plane, receipts

    async def decide(
        self, name: str, version_id: str | None, body: aa.AdverseActionRequest, caller: Caller
    ) -> Outcome:
        """One applicant: the decision document with header fields, or 202 past ``wait``."""
        version = self.plane.store.get(name, version_id)
        require_classifier(version.manifest)
        applicant = _validated(version.manifest, body.applicant, ("body", "applicant"))
        ids = [body.application_id]
        outcome = await self._submit(
            version, [applicant], ids, body.options, body.wait, None, caller
        )
        if outcome.status != 200:
            return outcome
        document = orjson.loads(outcome.body)
        header = {k: document[k] for k in ("model", "version", "content_hash", "job_id")}
        body_bytes = orjson.dumps({**header, **document["results"][0]})
        return Outcome(200, body_bytes, outcome.job_id, outcome.cache)

    async def decide_batch(
        self,
        name: str,
        version_id: str | None,
        applicants: list[dict[str, Any]],
        application_ids: list[str | None] | None,
        options: AdverseActionOptions,
        wait: float | None,
        caller: Caller,
    ) -> Outcome:
        """Many applicants as one job on the batch queue; result rows as for one applicant."""
        require_classifier(self.plane.store.get(name, version_id).manifest)
        version, instances = await self.plane.checked_instances(
            name, version_id, applicants, ("body", "applicants")
        )
        if application_ids is not None and len(application_ids) != len(instances):
            raise InvalidRequestError(
                [
                    Issue(
                        ("body", "application_ids"),
                        f"has {len(application_ids)} ids for {len(instances)} applicants",
                    )
                ]
            )
        ids: list[str | None] = list(application_ids or [None] * len(instances))
        return await self._submit(version, instances, ids, options, wait, BATCH, caller)

    async def _submit(
        self,
        version: ModelVersion,
        instances: list[dict[str, Any]],
        application_ids: list[str | None],
        options: AdverseActionOptions,
        wait: float | None,
        queue: str | None,
        caller: Caller,
    ) -> Outcome:
        issues = request_issues(version.manifest, options)
        if issues:
            raise InvalidRequestError(issues)
        raw = {"adverse_action": options.model_dump(mode="json")}
        work = content_key(
            version.content_hash, KIND, [], {**raw, "application_ids": application_ids}, instances
        )
        key = tenant_key(work, caller.tenant)
        seed = options.seed if options.seed is not None else derived_seed(work)
        header = {**job_header(version), "kind": KIND, "seed": seed}
        args = (caller.tenant, key, version, instances, application_ids, raw["adverse_action"])
        if len(instances) <= INLINE_VALIDATION_ROWS:
            receipt_ids = self._receipt_ids(*args, seed)
        else:
            receipt_ids = await asyncio.to_thread(self._receipt_ids, *args, seed)
        settings = self.plane.settings
        return await self.plane.run_job(
            key,
            TaskKind.adverse_action,
            version,
            instances,
            [],
            raw,
            seed,
            header,
            wait,
            queue,
            extra={
                "receipts": settings.receipts_location,
                "receipt_retention": settings.receipt_retention_seconds,
                "tenant": caller.tenant,
                "content_key": key,
            },
            per_instance={"application_ids": application_ids, "receipt_ids": receipt_ids},
            tenant=caller.tenant,
        )

    def _receipt_ids(
        self,
        tenant: str,
        key: str,
        version: ModelVersion,
        instances: list[dict[str, Any]],
        application_ids: list[str | None],
        options: dict[str, Any],
        seed: int,
    ) -> list[str]:
        """Each applicant's receipt id: the tenant's handle on what the decision is
        computed from (see ``service.receipts.record.receipt_key``)."""
        handles = self.plane.handles
        return [
            handles.receipt_id(
                tenant,
                receipt_key(
                    key,
                    index,
                    version.content_hash,
                    receipt_request(applicant, application_ids[index], options),
                    seed,
                ),
            )
            for index, applicant in enumerate(instances)
        ]

    async def purge_expired(self) -> int:
        """Delete receipts past the retention period (embedded store; Redis uses TTLs)."""
        seconds = self.plane.settings.receipt_retention_seconds
        if seconds is None:
            return 0
        return await self.receipts.call(self.receipts.store.purge, time.time() - seconds)

    # --- model versions
    async def delete_version(self, name: str, version_id: str) -> None:
        """Remove a version's folder; refused while receipts refer to it."""
        version = self.plane.store.get(name, version_id)
        referring = await self.receipts.call(
            self.receipts.store.count_for_version, version.version_id
        )
        if referring:
            raise ConflictError(
                f"{referring} receipt(s) refer to {name} version {version.version_id}; "
                "it cannot be deleted while they are retained"
            )
        await asyncio.to_thread(self.plane.store.delete, version)
        self.plane.descriptions.pop(version.version_id, None)

    # --- batch result formats
    async def notices(self, job_id: str, caller: Caller) -> bytes:
        """Plain-text notices of the denied applicants, separated by form feeds."""
        rows = await self._rows(job_id, caller)
        texts = [
            f"[applicant {i}]\n{row['notice']}" for i, row in enumerate(rows) if row.get("notice")
        ]
        return "\f\n".join(texts).encode()

    async def table(self, job_id: str, caller: Caller) -> bytes:
        """One CSV row per applicant: decision, score, reasons, recourse, receipt."""
        rows = await self._rows(job_id, caller)
        most = max((len(r["reasons"]) for r in rows), default=0)
        header = ["index", "application_id", "decision", "score", "threshold"]
        for n in range(1, most + 1):
            header += [f"reason_{n}_code", f"reason_{n}_statement"]
        header += ["recourse", "proxy_warning", "receipt_id"]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for index, row in enumerate(rows):
            reasons = [x for r in row["reasons"] for x in (r["code"], r["statement"])]
            reasons += [""] * (2 * most - len(reasons))
            options = (row.get("recourse") or {}).get("options") or []
            warning = row.get("proxy_warning") or {}
            writer.writerow(
                [index, row.get("application_id") or "", row["decision"], row["score"]]
                + [row["threshold"], *reasons]
                + [" | ".join(o["text"] for o in options)]
                + [", ".join(f["feature"] for f in warning.get("features", []))]
                + [row["receipt_id"]]
            )
        return out.getvalue().encode()

    async def _rows(self, job_id: str, caller: Caller) -> list[dict[str, Any]]:
        document = orjson.loads(await self.plane.job_result(job_id, caller))
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise ConflictError(
                f"job '{job_id}' is not an adverse-action job: csv and notices are formats of "
                "adverse-action results; use json or jsonl"
            )
        return document["results"]


def require_classifier(manifest: Manifest) -> None:
    """Adverse action decides between classes: a regression model is refused up front."""
    if manifest.task is Task.regression:
        raise invalid(("path", "name"), NEEDS_CLASSIFIER)


def _validated(manifest: Any, applicant: dict[str, Any], loc: tuple[str, ...]) -> dict[str, Any]:
    row, issues = validate_instance(manifest, applicant, loc)
    if issues:
        raise InvalidRequestError(issues)
    return row


def applicants_from_csv(
    manifest: Any, data: bytes
) -> tuple[list[dict[str, Any]], list[str | None] | None]:
    """Applicants (checked against the feature schema) and optional ``application_id``
    column of an uploaded CSV; problems are 422s naming the line and column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError([Issue(("body", "file"), "must be UTF-8 CSV text")]) from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    known = {*manifest.feature_names, APPLICATION_ID}
    issues = [
        Issue(("body", "file", "columns", c), "unknown column", "extra_forbidden")
        for c in columns
        if c not in known
    ]
    issues += [
        Issue(("body", "file", "columns", f), "missing feature column", "missing")
        for f in manifest.feature_names
        if f not in columns
    ]
    if issues:
        raise InvalidRequestError(issues)
    applicants: list[dict[str, Any]] = []
    ids: list[str | None] = []
    for line, raw in enumerate(reader, start=2):
        row: dict[str, Any] = {}
        for feature in manifest.features:
            value = raw[feature.name]
            if feature.type.value == "numeric":
                try:
                    row[feature.name] = float(value)
                except (TypeError, ValueError):
                    issues.append(
                        Issue(("body", "file", line, feature.name), f"{value!r} is not a number")
                    )
            else:
                row[feature.name] = value
        if len(row) == len(manifest.features):
            row, problems = validate_instance(manifest, row, ("body", "file", line))
            issues += problems
        applicants.append(row)
        ids.append(raw.get(APPLICATION_ID) or None)
        if len(issues) >= MAX_CSV_ISSUES:
            break
    if issues:
        raise InvalidRequestError(issues)
    if not applicants:
        raise InvalidRequestError([Issue(("body", "file"), "has no applicant rows", "too_short")])
    has_ids = APPLICATION_ID in columns
    return applicants, ids if has_ids else None
