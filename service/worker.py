"""Worker process entry: warm model and explainer caches, run one task, report the result.

The same :func:`run_task` runs in the embedded process pool and in distributed workers.
It never raises: failures come back as an error payload with a status and a reason.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from service.adverse.decision import AdverseActionEngine, notice_text
from service.adverse.options import AdverseActionOptions
from service.errors import ServiceError, invalid
from service.explainers.base import Explainer
from service.explainers.crosscheck import FaithfulnessOptions, agreement, faithfulness
from service.explainers.global_ import run_global
from service.explainers.registry import explainer_class, parse_options, supported_methods
from service.jobs.keys import canonical_json, row_seed
from service.jobs.spec import TaskKind, TaskResult, TaskSpec
from service.receipts.record import build_receipt, receipt_request
from service.receipts.signing import ReceiptSigner
from service.receipts.store import open_receipts
from service.registration import registration_document
from service.registry.artifacts import UnsafeArtifactError
from service.registry.isolation import DEFAULT_TIMEOUT, validate_isolated
from service.registry.loaded import LoadedModel
from service.registry.remote import policy as remote_policy
from service.registry.remote.predictor import RemotePredictor
from service.registry.store import ModelStore
from service.registry.validation import CandidateError

log = logging.getLogger(__name__)

MAX_MODELS = 8
MAX_EXPLAINERS = 32
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_stores: dict[str, ModelStore] = {}
_models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
_explainers: OrderedDict[tuple[str, str, bytes], Explainer] = OrderedDict()
_engines: OrderedDict[tuple[str, str, bytes], AdverseActionEngine] = OrderedDict()
_extra_trusted: tuple[str, ...] = ()
_signer: ReceiptSigner | None = None


def init_worker(
    models_dir: str,
    extra_trusted: list[str],
    threads: int = 1,
    signing_key: bytes | None = None,
    remote: dict[str, float] | None = None,
) -> None:
    """Process initializer: limit native threads, keep the receipt signing key (PEM), then
    load the latest model versions and build their default explainers. ``remote``: the
    remote-model policy (:class:`service.registry.remote.policy.RemotePolicy` fields)."""
    global _extra_trusted, _signer
    _extra_trusted = tuple(extra_trusted)
    if signing_key is not None:
        _signer = ReceiptSigner.from_pem(signing_key)
    remote_policy.configure(remote_policy.RemotePolicy(**(remote or {})))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    store = _store(models_dir)
    for name in store.names():
        try:
            describe(_model(models_dir, name, store.get(name).version_id))
        except Exception as exc:  # noqa: BLE001 - a broken model must not stop the worker
            log.error("could not preload %s: %s", name, exc)


def run_task(spec: TaskSpec) -> TaskResult:
    """Run one task; return ``results``/``description`` or an ``error`` payload."""
    remote_policy.begin_task()
    outcome = _run_task(spec)
    if "error" not in outcome:
        try:
            remote_policy.end_task()  # a remote model's failure that an explainer swallowed
        except ServiceError as exc:
            return {"error": exc.as_payload()}
    return outcome


def run_task_encoded(spec: TaskSpec) -> TaskResult:
    """:func:`run_task` with its rows encoded as one JSON array (``rows_json``) here, in the
    worker process, so that whoever assembles the job joins chunks as bytes: the same
    encoding as a distributed worker's, with numpy values allowed as the assembler allows."""
    outcome = run_task(spec)
    if "error" in outcome:
        return outcome
    rows = outcome.get("results") or [outcome.get("description", {})]
    return {"rows_json": orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)}


def _run_task(spec: TaskSpec) -> TaskResult:
    try:
        kind = TaskKind(spec["kind"])
        if kind is TaskKind.ping:
            return {"results": [{"pid": os.getpid()}]}
        if kind is TaskKind.validate:
            folder, timeout = Path(spec["folder"]), spec.get("timeout", DEFAULT_TIMEOUT)
            report = validate_isolated(
                folder, spec["source"], _extra_trusted, timeout, check=registration_document
            )
            return {"description": report}
        model = _model(spec["models_dir"], spec["model"], spec["version"])
        if kind is TaskKind.describe:
            return {"description": describe(model)}
        if kind is TaskKind.global_:
            options = spec["options"]
            document = run_global(
                model,
                spec["methods"],
                options["global"],
                spec["instances"],
                options.get("labels"),
                spec["seed"],
                partial(_explainer, model, "shap"),  # type: ignore[arg-type]
            )
            return {"results": [document]}
        frame = model.frame(spec["instances"])
        if kind is TaskKind.adverse_action:
            return {"results": _adverse_action(model, frame, spec)}
        predictions = model.predictions(frame)
        if kind is TaskKind.predict:
            return {"results": predictions}
        seeds = [row_seed(spec["seed"], spec.get("offset", 0) + i) for i in range(len(frame))]
        per_method = {
            method: _explainer(model, method, spec["options"].get(method)).explain(frame, seeds)
            for method in spec["methods"]
        }
        checks = spec["options"].get("crosscheck") or {}
        rows = []
        for i, prediction in enumerate(predictions):
            explanations = {m: per_method[m][i] for m in spec["methods"]}
            row: dict[str, Any] = {"prediction": prediction, "explanations": explanations}
            agreed = agreement(explanations, int(checks.get("agreement_k", 5)))
            if agreed is not None:
                row["agreement"] = agreed
            if checks.get("faithfulness"):
                deletion = FaithfulnessOptions.model_validate(checks["faithfulness"])
                tests = [
                    faithfulness(model, frame.iloc[[i]], m, r, deletion, seeds[i])
                    for m, r in explanations.items()
                ]
                row["faithfulness"] = [t for t in tests if t is not None]
            rows.append(row)
        return {"results": rows}
    except ServiceError as exc:
        return {"error": exc.as_payload()}
    except (UnsafeArtifactError, CandidateError) as exc:
        return {"error": {"status_code": 422, "message": str(exc)}}
    except Exception as exc:  # noqa: BLE001 - reported as a failed job, never lost
        log.exception("task failed")
        return {"error": {"status_code": 500, "message": f"{type(exc).__name__}: {exc}"}}


def describe(model: LoadedModel) -> dict[str, Any]:
    """What the gateway shows about a loaded version: methods, and per output space the
    SHAP algorithm chosen with its self-check and background (``ShapExplainer.summary``);
    for a remote model, whether its endpoint still answers as registered."""
    description: dict[str, Any] = {
        "methods": supported_methods(model),
        "reference_rows": len(model.reference),
    }
    if isinstance(model.predictor, RemotePredictor):
        # checked now: the detail of a remote version shows whether its endpoint still
        # answers as registered (the SHAP engine, when it does, needs the endpoint)
        description["remote"] = model.predictor.check_now()
        if description["remote"]["state"] != "ok":
            return {**description, "shap_algorithm": None, "shap": {}}
    shap = _explainer(model, "shap", None)
    spaces: dict[str, Any] = {shap.space: shap.summary()}  # type: ignore[attr-defined]
    if model.predictor.is_classifier:
        other = _explainer(model, "shap", {"output": "probability"})
        spaces["probability"] = other.summary()  # type: ignore[attr-defined]
    return {**description, "shap_algorithm": getattr(shap, "algorithm", None), "shap": spaces}


def _store(models_dir: str) -> ModelStore:
    store = _stores.get(models_dir)
    if store is None:
        store = _stores[models_dir] = ModelStore(Path(models_dir))
        store.scan()
    return store


def _model(models_dir: str, name: str, version_id: str) -> LoadedModel:
    key = (models_dir, version_id)
    model = _models.get(key)
    if model is None:
        model = LoadedModel.load(_store(models_dir).get(name, version_id), _extra_trusted)
        _models[key] = model
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
    _models.move_to_end(key)
    return model


def _adverse_action(model: LoadedModel, frame: Any, spec: TaskSpec) -> list[dict[str, Any]]:
    """Decision documents with their receipt ids (derived by the gateway) and notices;
    receipts signed and stored unless replaying."""
    raw_options = spec["options"]["adverse_action"]
    engine = _engine(model, AdverseActionOptions.model_validate(raw_options))
    offset = spec.get("offset", 0)
    seeds = [row_seed(spec["seed"], offset + i) for i in range(len(frame))]
    ids = spec.get("application_ids") or [None] * len(frame)
    receipt_ids = spec.get("receipt_ids") or []
    if len(receipt_ids) != len(frame):
        raise ServiceError("an adverse-action task needs one receipt id per applicant")
    documents = engine.decide(frame, seeds, ids)
    for i, document in enumerate(documents):
        document["receipt_id"] = receipt_ids[i]
        document["notice"] = notice_text(model, document)
    if "receipts" in spec:
        signer = _receipt_signer()
        receipts = [
            signer.sign(
                build_receipt(
                    model,
                    spec["tenant"],
                    spec["job_id"],
                    spec["content_key"],
                    offset + i,
                    spec["seed"],
                    receipt_request(spec["instances"][i], ids[i], raw_options),
                    d,
                )
            )
            for i, d in enumerate(documents)
        ]
        open_receipts(spec["receipts"], spec.get("receipt_retention")).put_many(receipts)
    return documents


def _receipt_signer() -> ReceiptSigner:
    """The key given at start, else this process's configured one."""
    global _signer
    if _signer is None:
        from service.receipts.keys import load_signer
        from service.settings import get_settings

        _signer = load_signer(get_settings())
    return _signer


def _engine(model: LoadedModel, options: AdverseActionOptions) -> AdverseActionEngine:
    # the seed arrives per call: one engine serves every seed
    settings = canonical_json(options.model_dump(exclude={"seed"}))
    key = (model.version.content_hash, "adverse_action", settings)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = AdverseActionEngine(model, options)
        while len(_engines) > MAX_EXPLAINERS:
            _engines.popitem(last=False)
    _engines.move_to_end(key)
    return engine


def _explainer(model: LoadedModel, method: str, raw_options: dict[str, Any] | None) -> Explainer:
    options = parse_options(method, raw_options)
    key = (model.version.content_hash, method, canonical_json(options.model_dump()))
    explainer = _explainers.get(key)
    if explainer is None:
        cls = explainer_class(method)
        if not cls.supports(model):
            raise invalid(("body", "methods"), f"method '{method}' does not support this model")
        explainer = _explainers[key] = cls(model, options)
        while len(_explainers) > MAX_EXPLAINERS:
            _explainers.popitem(last=False)
    _explainers.move_to_end(key)
    return explainer
