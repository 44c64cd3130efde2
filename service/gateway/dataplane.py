"""The transport-free data plane: what each endpoint does, without HTTP."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from service.errors import (
    InvalidRequestError,
    Issue,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    UnavailableError,
    error_from_payload,
)
from service.gateway import schemas
from service.jobs.keys import content_key, derived_seed
from service.jobs.manager import Assemble, JobManager
from service.jobs.spec import TaskKind, TaskSpec
from service.jobs.store import JobRecord, JobState
from service.registry.artifacts import UnsafeArtifactError, check_upload_format
from service.registry.manifest import parse_manifest
from service.registry.schema import validate_instances
from service.registry.store import ModelStore, ModelVersion
from service.settings import Settings

INLINE_VALIDATION_ROWS = 100


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
    def __init__(self, settings: Settings, store: ModelStore, manager: JobManager) -> None:
        self.settings, self.store, self.manager = settings, store, manager
        self.descriptions: dict[str, dict[str, Any]] = {}
        self.ready = False
        self.cache_hits = 0
        self.cache_misses = 0

    # --- lifecycle
    async def warm_up(self) -> None:
        """Ping the executor and describe every latest version (loads them in workers)."""
        await self._task({"kind": TaskKind.ping})
        for name in self.store.names():
            await self.describe(self.store.get(name))
        self.ready = True

    async def describe(self, version: ModelVersion) -> dict[str, Any]:
        if version.version_id not in self.descriptions:
            outcome = await self._task(
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
            artifact_format=manifest.artifact.format.value,
            features=[
                schemas.FeatureSchema(**f.model_dump(exclude={"reason"})) for f in manifest.features
            ],
            methods=described["methods"],
            shap_algorithm=described["shap_algorithm"],
            reference_rows=described["reference_rows"],
            metrics=manifest.metrics,
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
        self, name: str, version_id: str | None, body: schemas.PredictRequest
    ) -> Outcome:
        version, instances = await self._checked(name, version_id, body.instances)
        key = content_key(version.content_hash, TaskKind.predict, [], {}, instances)

        def assemble(rows: list[dict[str, Any]]) -> bytes:
            return _dump(
                schemas.PredictResponse(
                    model=name,
                    version=version.version_id,
                    content_hash=version.content_hash,
                    job_id=key,
                    predictions=[schemas.Prediction(**r) for r in rows],
                )
            )

        return await self._run(key, TaskKind.predict, version, instances, [], {}, 0, assemble, None)

    async def explain(
        self, name: str, version_id: str | None, body: schemas.ExplainRequest
    ) -> Outcome:
        version, instances = await self._checked(name, version_id, body.instances)
        methods = list(dict.fromkeys(body.methods))
        options = {
            m: (getattr(body.options, m, None) or _default_options(m)).model_dump() for m in methods
        }
        key = content_key(
            version.content_hash,
            TaskKind.explain,
            methods,
            {"seed": body.options.seed, **options},
            instances,
        )
        seed = body.options.seed if body.options.seed is not None else derived_seed(key)

        def assemble(rows: list[dict[str, Any]]) -> bytes:
            return _dump(
                schemas.ExplainResponse(
                    model=name,
                    version=version.version_id,
                    content_hash=version.content_hash,
                    job_id=key,
                    seed=seed,
                    results=[schemas.InstanceExplanation(**r) for r in rows],
                )
            )

        return await self._run(
            key, TaskKind.explain, version, instances, methods, options, seed, assemble, body.wait
        )

    async def _checked(
        self, name: str, version_id: str | None, instances: list[dict[str, Any]]
    ) -> tuple[ModelVersion, list[dict[str, Any]]]:
        version = self.store.get(name, version_id)
        if len(instances) > self.settings.max_instances:
            raise PayloadTooLargeError(
                f"{len(instances)} instances exceed the limit of {self.settings.max_instances}"
            )
        if len(instances) <= INLINE_VALIDATION_ROWS:
            return version, validate_instances(version.manifest, instances)
        # Large batches are validated off the event loop.
        return version, await asyncio.to_thread(validate_instances, version.manifest, instances)

    async def _run(
        self,
        key: str,
        kind: TaskKind,
        version: ModelVersion,
        instances: list[dict[str, Any]],
        methods: list[str],
        options: dict[str, Any],
        seed: int,
        assemble: Assemble,
        wait: float | None,
    ) -> Outcome:
        cached = self.manager.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return Outcome(200, cached, key, "hit")
        if not self.ready:
            raise UnavailableError("the service is starting; models are still loading")
        self.cache_misses += 1
        size = self.settings.chunk_size
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
            }
            for i in range(0, len(instances), size)
        ]
        record = JobRecord(
            job_id=key, kind=kind.value, model=version.name, version=version.version_id
        )
        record = self.manager.start(record, specs, assemble)
        budget = self.settings.default_wait if wait is None else wait
        if await self.manager.wait(record, min(budget, self.settings.max_wait)):
            return self._finished(record)
        return Outcome(202, _dump(self._accepted(record)), key)

    def _finished(self, record: JobRecord) -> Outcome:
        if record.state is JobState.succeeded:
            body = self.manager.result(record.job_id)
            if body is not None:
                return Outcome(200, body, record.job_id, "miss")
        error = error_from_payload(record.error or {"status_code": 500, "message": "result lost"})
        error.headers["X-Job-Id"] = record.job_id
        raise error

    def _accepted(self, record: JobRecord) -> schemas.JobAccepted:
        return schemas.JobAccepted(
            job_id=record.job_id,
            status=record.state.value,
            progress=record.progress,
            location=f"/v1/jobs/{record.job_id}",
        )

    # --- jobs
    def job_status(self, job_id: str) -> bytes:
        record = self.manager.find(job_id)
        if record is None:
            cached = self.manager.cache.get(job_id)
            if cached is None:
                raise NotFoundError(f"job '{job_id}' not found (unknown or expired)")
            result = orjson.loads(cached)
            status = {
                "job_id": job_id,
                "kind": "explain" if "results" in result else "predict",
                "model": result["model"],
                "version": result["version"],
                "status": "succeeded",
                "progress": 1.0,
                "created_at": 0.0,
            }
            return orjson.dumps({**status, "result": orjson.Fragment(cached)})
        status = schemas.JobStatus(
            job_id=record.job_id,
            kind=record.kind,
            model=record.model,
            version=record.version,
            status=record.state.value,
            progress=record.progress,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            error=schemas.JobError(**record.error) if record.error else None,
        ).model_dump(mode="json", exclude_none=True)
        result = self.manager.result(job_id) if record.state is JobState.succeeded else None
        if result is not None:
            status["result"] = orjson.Fragment(result)
        return orjson.dumps(status)

    def cancel(self, job_id: str) -> bytes:
        if self.manager.cancel(job_id) is None:
            raise NotFoundError(f"job '{job_id}' not found (unknown or expired)")
        return self.job_status(job_id)

    # --- registration
    async def register(
        self, manifest_bytes: bytes, uploads: dict[str, bytes]
    ) -> schemas.RegisteredModel:
        manifest = parse_manifest(manifest_bytes)
        try:
            check_upload_format(manifest)
        except UnsafeArtifactError as exc:
            raise InvalidRequestError(
                [Issue(("manifest", "artifact", "format"), str(exc))]
            ) from exc
        names = {"artifact": manifest.artifact.path, "reference": manifest.reference_data.path}
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
            outcome = await self._task(
                {"kind": TaskKind.validate, "folder": str(staging), "source": "http"}
            )
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
            validation=outcome["description"],
        )

    async def _task(self, spec: TaskSpec) -> dict[str, Any]:
        """Run one worker task now and return its outcome, raising its error."""
        try:
            future = self.manager.executor.submit(spec, self.settings.job_time_limit)
            outcome: dict[str, Any] = await asyncio.wrap_future(future)
        except TimeoutError as exc:
            raise ServiceError("worker task exceeded its time limit") from exc
        if "error" in outcome:
            error = outcome["error"]
            if (
                spec["kind"] == TaskKind.validate
                and error.get("status_code") == 422
                and not error.get("issues")
            ):
                raise InvalidRequestError([Issue(("body", "artifact"), error["message"])])
            raise error_from_payload(error)
        return outcome


def _default_options(method: str) -> Any:
    from service.explainers.registry import explainer_class

    return explainer_class(method).Options()


def _dump(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True))


def _write_files(folder: Any, manifest_bytes: bytes, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_bytes(manifest_bytes)
    for name, data in files.items():
        (folder / name).write_bytes(data)
