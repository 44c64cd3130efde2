"""The data plane of adverse-action decisions, batch notices, receipts and the deletion of
model versions (refused while receipts refer to them)."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import TYPE_CHECKING, Any

import orjson

from service.adverse.options import AdverseActionOptions
from service.errors import ConflictError, InvalidRequestError, Issue, NotFoundError, ServiceError
from service.gateway import adverse_schemas as aa
from service.gateway.dataplane import BATCH, Outcome, job_header
from service.jobs.keys import content_key, derived_seed
from service.jobs.spec import TaskKind
from service.receipts.record import differences
from service.receipts.store import ReceiptStore, open_receipts
from service.registry.remote.errors import ModelChangedError
from service.registry.remote.fingerprint import stored_digest
from service.registry.schema import validate_instance

if TYPE_CHECKING:
    from service.gateway.dataplane import DataPlane

KIND = TaskKind.adverse_action.value
APPLICATION_ID = "application_id"
# Recourse (and the notice that lists it) comes from a search with a time budget: a search
# cut short depends on the machine's speed, so it is compared apart from the decision.
RECOURSE_PATHS = ("recourse", "evidence.recourse_validity", "notice")
RECOURSE_NOTE = (
    "the recourse search runs under a time budget; a search cut short by it depends on "
    "machine speed and load, so its options can differ on replay while the decision, "
    "reasons and evidence match"
)
MAX_CSV_ISSUES = 50


class Decisions:
    """Adverse-action requests on top of the shared job path (cache, queues, chunks)."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        settings = plane.settings
        self.receipts: ReceiptStore = open_receipts(
            settings.receipts_location, settings.receipt_retention_seconds
        )

    async def decide(
        self, name: str, version_id: str | None, body: aa.AdverseActionRequest
    ) -> Outcome:
        """One applicant: the decision document with header fields, or 202 past ``wait``."""
        version = self.plane.store.get(name, version_id)
        applicant = _validated(version.manifest, body.applicant, ("body", "applicant"))
        ids = [body.application_id]
        outcome = await self._submit(version, [applicant], ids, body.options, body.wait, None)
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
    ) -> Outcome:
        """Many applicants as one job on the batch queue; result rows as for one applicant."""
        version, instances = await self.plane.checked_instances(name, version_id, applicants)
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
        return await self._submit(version, instances, ids, options, wait, BATCH)

    async def _submit(
        self,
        version: Any,
        instances: list[dict[str, Any]],
        application_ids: list[str | None],
        options: AdverseActionOptions,
        wait: float | None,
        queue: str | None,
    ) -> Outcome:
        raw = {"adverse_action": options.model_dump(mode="json")}
        key = content_key(
            version.content_hash, KIND, [], {**raw, "application_ids": application_ids}, instances
        )
        seed = options.seed if options.seed is not None else derived_seed(key)
        header = {**job_header(version, key), "kind": KIND, "seed": seed}
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
            },
            per_instance={"application_ids": application_ids},
        )

    # --- receipts
    async def receipt(self, receipt_id: str) -> dict[str, Any]:
        receipt = await asyncio.to_thread(self.receipts.get, receipt_id)
        if receipt is None:
            raise NotFoundError(f"receipt '{receipt_id}' not found")
        return receipt

    async def verify(self, receipt_id: str) -> aa.ReceiptVerification:
        """Recompute the decision with the receipt's version, options and seeds (no cache)
        and compare it with the stored response."""
        receipt = await self.receipt(receipt_id)
        version = self.plane.store.get(receipt["model"], receipt["version"])
        if version.content_hash != receipt["content_hash"]:
            raise ConflictError(f"model version {receipt['version']} no longer has its content")
        replayed_with = {
            "model": version.name,
            "version": version.version_id,
            "content_hash": version.content_hash,
            "seed": receipt["seed"],
            "row_seed": receipt["row_seed"],
        }
        try:
            outcome = await self._replay(version, receipt)
        except ServiceError as exc:
            if exc.code != ModelChangedError.code:
                raise
            # a remote model whose endpoint no longer answers as when the decision was made
            return aa.ReceiptVerification(
                receipt_id=receipt_id,
                match=False,
                model_changed=True,
                model_changed_detail=exc.message,
                differences=[],
                recourse_match=False,
                recourse_differences=[],
                replayed_with={**replayed_with, "fingerprint": receipt.get("fingerprint")},
            )
        replayed = orjson.loads(orjson.dumps(outcome["results"][0]))
        found = differences(receipt["response"], replayed)
        decisive = [d for d in found if not d["path"].startswith(RECOURSE_PATHS)]
        recourse = [d for d in found if d["path"].startswith(RECOURSE_PATHS)]
        # the replay ran only after the endpoint matched the version's fingerprint
        fingerprint = await asyncio.to_thread(stored_digest, version.path)
        return aa.ReceiptVerification(
            receipt_id=receipt_id,
            match=not decisive,
            model_changed=fingerprint != receipt.get("fingerprint"),
            differences=[aa.Difference(**d) for d in decisive],
            recourse_match=not recourse,
            recourse_differences=[aa.Difference(**d) for d in recourse],
            recourse_note=RECOURSE_NOTE if recourse else None,
            replayed_with={
                **replayed_with,
                **({"fingerprint": fingerprint} if fingerprint is not None else {}),
            },
        )

    async def _replay(self, version: Any, receipt: dict[str, Any]) -> dict[str, Any]:
        """The receipt's decision recomputed by a worker (no cache, no receipt written)."""
        request = receipt["request"]
        return await self.plane.jobs.call(
            {
                "kind": TaskKind.adverse_action,
                "models_dir": str(self.plane.settings.models_dir),
                "model": version.name,
                "version": version.version_id,
                "instances": [request["applicant"]],
                "options": {"adverse_action": request["options"]},
                "seed": receipt["seed"],
                "offset": receipt["index"],
                "job_id": receipt["job_id"],
                "application_ids": [request.get("application_id")],
            }
        )

    async def purge_expired(self) -> int:
        """Delete receipts past the retention period (embedded store; Redis uses TTLs)."""
        seconds = self.plane.settings.receipt_retention_seconds
        if seconds is None:
            return 0
        return await asyncio.to_thread(self.receipts.purge, time.time() - seconds)

    # --- model versions
    async def delete_version(self, name: str, version_id: str) -> None:
        """Remove a version's folder; refused while receipts refer to it."""
        version = self.plane.store.get(name, version_id)
        referring = await asyncio.to_thread(self.receipts.count_for_version, version.version_id)
        if referring:
            raise ConflictError(
                f"{referring} receipt(s) refer to {name} version {version.version_id}; "
                "it cannot be deleted while they are retained"
            )
        await asyncio.to_thread(self.plane.store.delete, version)
        self.plane.descriptions.pop(version.version_id, None)

    # --- batch result formats
    async def notices(self, job_id: str) -> bytes:
        """Plain-text notices of the denied applicants, separated by form feeds."""
        rows = await self._rows(job_id)
        texts = [
            f"[applicant {i}]\n{row['notice']}" for i, row in enumerate(rows) if row.get("notice")
        ]
        return "\f\n".join(texts).encode()

    async def table(self, job_id: str) -> bytes:
        """One CSV row per applicant: decision, score, reasons, recourse, receipt."""
        rows = await self._rows(job_id)
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

    async def _rows(self, job_id: str) -> list[dict[str, Any]]:
        document = orjson.loads(await self.plane.job_result(job_id))
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise ConflictError(
                f"job '{job_id}' is not an adverse-action job: csv and notices are formats of "
                "adverse-action results; use json or jsonl"
            )
        return document["results"]


def _validated(manifest: Any, applicant: dict[str, Any], loc: tuple[str, ...]) -> dict[str, Any]:
    row, issues = validate_instance(manifest, applicant, loc)
    if issues:
        raise InvalidRequestError(issues)
    return row


def applicants_from_csv(
    manifest: Any, data: bytes
) -> tuple[list[dict[str, Any]], list[str | None] | None]:
    """Applicants (typed by the feature schema) and optional ``application_id`` column of an
    uploaded CSV; problems are 422s naming the line and column."""
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
