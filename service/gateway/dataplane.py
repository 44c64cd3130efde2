"""The transport-free data plane: what each endpoint does, without HTTP."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from service.errors import (
    ConflictError,
    InvalidRequestError,
    Issue,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    UnavailableError,
    WorkerLostError,
    error_from_payload,
)
from service.explainers.base import MethodOptions
from service.explainers.crosscheck import FaithfulnessOptions
from service.explainers.global_.check import check_request
from service.explainers.option_checks import request_issues
from service.gateway import schemas
from service.gateway.documents import dump, with_job_id
from service.gateway.errors import public
from service.gateway.handles import Handles, server_secret
from service.gateway.tenancy import Caller
from service.jobs.backend import JobBackend, JobView
from service.jobs.keys import content_key, derived_seed
from service.jobs.spec import TaskKind, TaskSpec
from service.jobs.store import JobState
from service.registry.artifacts import UnsafeArtifactError, check_upload_format
from service.registry.manifest import parse_manifest
from service.registry.remote.registration import fingerprint_file
from service.registry.remote.status import endpoint_changed
from service.registry.report import RegistrationReport
from service.registry.schema import validate_instances
from service.registry.store import ModelStore, ModelVersion
from service.settings import Settings

log = logging.getLogger(__name__)

INLINE_VALIDATION_ROWS = 100
VALIDATION_SHARE = 0.8  # of the task time limit, for the isolated registration check
INTERACTIVE, BATCH = "interactive", "batch"


@dataclass(frozen=True)
class Outcome:
    """A finished (200) or accepted (202) request, with its body bytes."""

    status: int
    body: bytes
    job_id: str
    cache: str | None = None

    @property
    def location(self) -> str:
        return f"/v1/jobs/{self.job_id}"


class DataPlane:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        jobs: JobBackend,
        handles: Handles | None = None,
    ) -> None:
        self.settings, self.store, self.jobs = settings, store, jobs
        self.handles = handles or Handles(server_secret(settings))
        self.descriptions: dict[str, dict[str, Any]] = {}
        self.ready = False
        self.cache_hits = 0
        self.cache_misses = 0
        self._roots = (str(settings.models_dir),)  # server folders kept out of messages

    # --- lifecycle
    async def warm_up(self) -> None:
        """Check the executor answers and describe every latest version (loads them)."""
        if self.settings.redis_url is None:
            await self.jobs.call({"kind": TaskKind.ping})
            for name in self.store.names():
                try:
                    await self.describe(self.store.get(name))
                except ServiceError as exc:  # one bad model must not keep the rest down
                    log.error("could not load model %s: %s", name, exc)
        self.ready = True

    async def problem(self) -> str | None:
        if not self.ready:
            return "models are loading"
        return await self.jobs.problem()

    async def describe(self, version: ModelVersion) -> dict[str, Any]:
        """What a worker says about the version (cached; a remote version's is asked each
        time: it holds the state of the endpoint, checked then)."""
        if version.version_id not in self.descriptions or version.manifest.is_remote:
            outcome = await self.jobs.call(
                {
                    "kind": TaskKind.describe,
                    "models_dir": str(self.settings.models_dir),
                    "model": version.name,
                    "version": version.version_id,
                }
            )
            self.descriptions[version.version_id] = outcome["description"]
        return self.descriptions[version.version_id]

    # --- models
    def list_models(self) -> schemas.ModelList:
        return schemas.ModelList(models=[self._summary(n) for n in self.store.names()])

    async def model_detail(self, name: str, version_id: str | None) -> schemas.ModelDetail:
        version = self.store.get(name, version_id)
        described = await self.describe(version)
        manifest = version.manifest
        return schemas.ModelDetail(
            **self._summary(name).model_dump(),
            version=version.version_id,
            classes=manifest.classes,
            favourable_class=manifest.favourable_class,
            decision_threshold=manifest.decision_threshold,
            artifact_format=str(manifest.artifact.format),  # an ArtifactFormat or "remote"
            features=[
                schemas.FeatureSchema(**f.model_dump(exclude={"reason"})) for f in manifest.features
            ],
            methods=described["methods"],
            shap_algorithm=described["shap_algorithm"],
            shap=described.get("shap", {}),
            reference_rows=described["reference_rows"],
            metrics=manifest.metrics,
            remote=described.get("remote"),
        )

    def _summary(self, name: str) -> schemas.ModelSummary:
        versions = self.store.versions(name)
        latest = versions[-1]
        return schemas.ModelSummary(
            name=name,
            description=latest.manifest.description,
            task=latest.manifest.task.value,
            latest_version=latest.version_id,
            versions=[
                schemas.VersionSummary(
                    version=v.version_id,
                    content_hash=v.content_hash,
                    manifest_hash=v.manifest_hash,
                    registered_at=v.registered_at,
                    source=v.source,
                )
                for v in versions
            ],
        )

    # --- predict / explain
    async def predict(
        self, name: str, version_id: str | None, body: schemas.PredictRequest, caller: Caller
    ) -> Outcome:
        version, instances = await self.checked_instances(name, version_id, body.instances)
        key = content_key(version.content_hash, TaskKind.predict, [], {}, instances)
        header = job_header(version)
        return await self.run_job(
            key, TaskKind.predict, version, instances, [], {}, 0, header, None, tenant=caller.tenant
        )

    async def explain(
        self, name: str, version_id: str | None, body: schemas.ExplainRequest, caller: Caller
    ) -> Outcome:
        version, instances = await self.checked_instances(name, version_id, body.instances)
        methods, parsed, options = explain_work(body)
        described = self.descriptions.get(version.version_id) or {}
        issues = request_issues(version.manifest, methods, parsed, described.get("shap_algorithm"))
        if issues:
            raise InvalidRequestError(issues)
        key = content_key(
            version.content_hash,
            TaskKind.explain,
            methods,
            {"seed": body.options.seed, **options},
            instances,
        )
        seed = body.options.seed if body.options.seed is not None else derived_seed(key)
        header = {**job_header(version), "seed": seed}
        return await self.run_job(
            key,
            TaskKind.explain,
            version,
            instances,
            methods,
            options,
            seed,
            header,
            body.wait,
            tenant=caller.tenant,
        )

    async def global_explanation(
        self, name: str, version_id: str | None, body: schemas.GlobalRequest, caller: Caller
    ) -> Outcome:
        """Global explanations of a version: one job on the batch queue, cached by key."""
        version = self.store.get(name, version_id)
        methods = list(dict.fromkeys(body.methods))
        rows: list[dict[str, Any]] = []
        if body.rows is not None:
            if len(body.rows) > self.settings.max_instances:
                raise PayloadTooLargeError(
                    f"{len(body.rows)} rows exceed the limit of {self.settings.max_instances}"
                )
            rows = await asyncio.to_thread(
                validate_instances, version.manifest, body.rows, ("body", "rows")
            )
        check_request(version.manifest, methods, body.options, body.rows, body.labels)
        options: dict[str, Any] = {
            "global": {m: getattr(body.options, m).model_dump() for m in methods},
            "labels": body.labels,
        }
        key = content_key(
            version.content_hash,
            TaskKind.global_,
            methods,
            {"seed": body.options.seed, **options},
            rows,
        )
        seed = body.options.seed if body.options.seed is not None else derived_seed(key)
        header = {**job_header(version), "kind": "global", "seed": seed, "methods": methods}
        return await self.run_job(
            key,
            TaskKind.global_,
            version,
            rows,
            methods,
            options,
            seed,
            header,
            body.wait,
            BATCH,
            tenant=caller.tenant,
        )

    async def checked_instances(
        self,
        name: str,
        version_id: str | None,
        instances: list[dict[str, Any]],
        loc: tuple[str, ...] = ("body", "instances"),
    ) -> tuple[ModelVersion, list[dict[str, Any]]]:
        """The version and the instances validated against its feature schema, issues
        located under ``loc`` (413 past the instance limit)."""
        version = self.store.get(name, version_id)
        if len(instances) > self.settings.max_instances:
            raise PayloadTooLargeError(
                f"{len(instances)} instances exceed the limit of {self.settings.max_instances}"
            )
        if len(instances) <= INLINE_VALIDATION_ROWS:
            return version, validate_instances(version.manifest, instances, loc)
        # Large batches are validated off the event loop.
        return version, await asyncio.to_thread(
            validate_instances, version.manifest, instances, loc
        )

    async def run_job(
        self,
        key: str,
        kind: TaskKind,
        version: ModelVersion,
        instances: list[dict[str, Any]],
        methods: list[str],
        options: dict[str, Any],
        seed: int,
        header: dict[str, Any],
        wait: float | None,
        queue: str | None = None,
        extra: dict[str, Any] | None = None,
        per_instance: dict[str, list[Any]] | None = None,
        *,
        tenant: str,
    ) -> Outcome:
        """Serve from the shared cache or submit ``tenant``'s job (on ``queue``, default by
        its chunks). The job's id is the tenant's handle on content key ``key``. ``extra``
        goes into every task spec; ``per_instance`` lists are sliced per chunk.

        ``X-Cache`` is per tenant: ``hit`` when this tenant's job of that id had already
        succeeded, so it never says that another tenant asked for the same work."""
        job_id = self.handles.job_id(tenant, key)
        view = JobView(
            job_id=job_id,
            kind=kind.value,
            model=version.name,
            version=version.version_id,
            state=JobState.queued,
            progress=0.0,
            created_at=time.time(),
            tenant=tenant,
            cache_key=key,
        )
        cached, before = await self.jobs.lookup(key, job_id)
        if cached is not None and not endpoint_changed(version):
            self.cache_hits += 1
            repeat = before is not None and before.state is JobState.succeeded
            if not repeat:
                await self.jobs.record_cached(view, cached)
            return Outcome(200, with_job_id(cached, job_id), job_id, "hit" if repeat else "miss")
        if not self.ready:
            raise UnavailableError("the service is starting; models are still loading")
        self.cache_misses += 1
        # a global job is one task over all its rows
        size = max(len(instances), 1) if kind is TaskKind.global_ else self._chunk_size(options)
        specs: list[TaskSpec] = [
            {
                "kind": kind,
                "models_dir": str(self.settings.models_dir),
                "model": version.name,
                "version": version.version_id,
                "instances": instances[i : i + size],
                "methods": methods,
                "options": options,
                "seed": seed,
                "offset": i,
                "job_id": job_id,
                **(extra or {}),  # type: ignore[typeddict-item]
                **{k: v[i : i + size] for k, v in (per_instance or {}).items()},  # type: ignore[typeddict-item]
            }
            for i in range(0, max(len(instances), 1), size)
        ]
        queue = queue or (INTERACTIVE if len(specs) == 1 else BATCH)
        budget = min(self.settings.default_wait if wait is None else wait, self.settings.max_wait)
        current = await self.jobs.run(view, specs, header, queue, budget)
        if current is not None and current.state.finished:
            return await self._finished(current)
        state = current or view
        accepted = schemas.JobAccepted(
            job_id=job_id,
            status=state.state.value,
            progress=state.progress,
            location=f"/v1/jobs/{job_id}",
        )
        return Outcome(202, dump(accepted), job_id)

    def _chunk_size(self, options: dict[str, Any]) -> int:
        """Instances per task; smaller when a method spends a time budget per instance, so a
        chunk stays within the hard time limit."""
        size = self.settings.chunk_size
        budget = (options.get("counterfactual") or {}).get("time_budget")
        recourse = (options.get("adverse_action") or {}).get("recourse") or {}
        if recourse.get("enabled"):
            budget = 2 * recourse["time_budget"]  # at most two searches per applicant
        if budget:
            size = min(size, max(1, int(self.settings.job_time_limit // (budget + 1))))
        return size

    async def _finished(self, view: JobView) -> Outcome:
        if view.state is JobState.succeeded:
            body = await self.jobs.result(view.job_id)
            if body is not None:
                return Outcome(200, with_job_id(body, view.job_id), view.job_id, "miss")
        error = error_from_payload(view.error or {"status_code": 500, "message": "result lost"})
        error.headers["X-Job-Id"] = view.job_id
        raise error

    # --- jobs (each visible to its tenant and to admins; to anyone else it does not exist)
    async def owned(self, job_id: str, caller: Caller) -> JobView:
        """The job, when ``caller`` may see it; else the 404 of an unknown id."""
        view = await self.jobs.view(job_id)
        if view is None or not caller.sees(view.tenant):
            raise NotFoundError(f"job '{job_id}' not found (unknown or expired)")
        return view

    async def job_status(self, job_id: str, caller: Caller) -> bytes:
        view = await self.owned(job_id, caller)
        status = schemas.JobStatus(
            job_id=view.job_id,
            kind=view.kind,
            model=view.model,
            version=view.version,
            status=view.state.value,
            progress=view.progress,
            created_at=view.created_at,
            started_at=view.started_at,
            finished_at=view.finished_at,
            error=schemas.JobError(**public(view.error, self._roots)) if view.error else None,
        ).model_dump(mode="json", exclude_none=True)
        result = await self.jobs.result(job_id) if view.state is JobState.succeeded else None
        if result is not None:
            status["result"] = orjson.Fragment(with_job_id(result, job_id))
        return orjson.dumps(status)

    async def job_result_lines(self, job_id: str, caller: Caller) -> AsyncIterator[bytes]:
        """A finished job's rows as JSON lines (one per instance)."""
        body = await self.job_result(job_id, caller)
        document = await asyncio.to_thread(orjson.loads, body)
        rows = document.get("results", document.get("predictions", []))
        if isinstance(rows, dict):  # a global explanation: one line per method
            rows = [{"method": method, **section} for method, section in rows.items()]
        header = {k: v for k, v in document.items() if k not in ("results", "predictions")}
        for index, row in enumerate(rows):
            yield orjson.dumps({"index": index, **header, **row}) + b"\n"

    async def job_result(self, job_id: str, caller: Caller) -> bytes:
        """A succeeded job's document (404 unknown or not the caller's, 409 no result)."""
        view = await self.owned(job_id, caller)
        body = await self.jobs.result(job_id)
        if body is None:
            raise ConflictError(f"job '{job_id}' is {view.state.value}; it has no result")
        return with_job_id(body, job_id)

    async def cancel(self, job_id: str, caller: Caller) -> bytes:
        await self.owned(job_id, caller)
        await self.jobs.cancel(job_id)
        return await self.job_status(job_id, caller)

    # --- registration
    async def register(
        self, manifest_bytes: bytes, uploads: dict[str, bytes]
    ) -> schemas.RegisteredModel:
        manifest = await asyncio.to_thread(parse_manifest, manifest_bytes)
        try:
            check_upload_format(manifest)
        except UnsafeArtifactError as exc:
            raise InvalidRequestError(
                [Issue(("manifest", "artifact", "format"), str(exc))]
            ) from exc
        names = {"artifact": manifest.artifact.path, "reference": manifest.reference_data.path}
        if manifest.is_remote:
            del names["artifact"]  # a remote model's fingerprint is measured, not uploaded
        if manifest.evaluation_data is not None:
            names["evaluation"] = manifest.evaluation_data.path
        missing = [field for field in names if field not in uploads]
        extra = [field for field in uploads if field not in names]
        if missing or extra:
            issues = [Issue(("body", f), "required by the manifest", "missing") for f in missing]
            issues += [
                Issue(("body", f), "the manifest names no such file", "extra_forbidden")
                for f in extra
            ]
            raise InvalidRequestError(issues)
        files = {names[field]: data for field, data in uploads.items()}
        staging = self.settings.models_dir / ".incoming" / uuid.uuid4().hex
        try:
            await asyncio.to_thread(_write_files, staging, manifest_bytes, files)
            spec: TaskSpec = {
                "kind": TaskKind.validate,
                "folder": str(staging),
                "source": "http",
                "timeout": VALIDATION_SHARE * self.settings.job_time_limit,
            }
            try:
                outcome = await self.jobs.call(spec)
            except InvalidRequestError:
                raise
            except WorkerLostError as exc:  # the check's own process is the one meant to die
                raise InvalidRequestError(
                    [Issue(("body", "artifact"), f"the artifact crashed its validation ({exc})")]
                ) from exc
            except Exception as exc:
                if getattr(exc, "status_code", 500) == 422:
                    loc = ("manifest", "artifact") if manifest.is_remote else ("body", "artifact")
                    raise InvalidRequestError([Issue(loc, str(exc))]) from exc
                raise
            files |= await asyncio.to_thread(fingerprint_file, staging, manifest)
            version, created = await asyncio.to_thread(
                self.store.register, manifest_bytes, files, "http"
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return schemas.RegisteredModel(
            name=version.name,
            version=version.version_id,
            content_hash=version.content_hash,
            created=created,
            report=RegistrationReport.model_validate(outcome["description"]),
        )


def job_header(version: ModelVersion) -> dict[str, Any]:
    """The fields every job result document starts with (after the job id, which is the
    caller's and is added when the document is served)."""
    return {
        "model": version.name,
        "version": version.version_id,
        "content_hash": version.content_hash,
    }


def explain_work(
    body: schemas.ExplainRequest,
) -> tuple[list[str], dict[str, MethodOptions], dict[str, Any]]:
    """The methods of an explain request, each method's parsed options (defaults filled
    in), and the full options as plain data (its content key is over these, the seed and
    the validated instances)."""
    methods = list(dict.fromkeys(body.methods))
    parsed = {m: getattr(body.options, m, None) or _default_options(m) for m in methods}
    options: dict[str, Any] = {m: parsed[m].model_dump() for m in methods}
    deletion = body.options.faithfulness
    if deletion is True:
        deletion = FaithfulnessOptions()
    options["crosscheck"] = {
        "agreement_k": body.options.agreement_k,
        "faithfulness": deletion.model_dump() if deletion else None,
    }
    return methods, parsed, options


def _default_options(method: str) -> Any:
    from service.explainers.registry import explainer_class

    return explainer_class(method).Options()


def _write_files(folder: Any, manifest_bytes: bytes, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_bytes(manifest_bytes)
    for name, data in files.items():
        (folder / name).write_bytes(data)
