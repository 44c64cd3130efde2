"""The registration report of a candidate version: the registry's checks and measurements,
then what the explainers make of it (SHAP per output space, the methods offered).

Runs where models run (a worker process, or the CLI for a local registration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from service.explainers.registry import supported_methods
from service.explainers.shap import ShapExplainer, ShapOptions
from service.explainers.shap.options import OutputSpace
from service.registry.loaded import LoadedModel
from service.registry.report import RegistrationReport, ShapSummary
from service.registry.store import MANIFEST_FILE, VERSION_ID_LENGTH, ModelVersion, content_hash
from service.registry.validation import ValidatedCandidate, validate_candidate


def registration_report(
    folder: Path, source: str, extra_trusted: Iterable[str] = ()
) -> RegistrationReport:
    """Validate the candidate in ``folder`` (raises when it must be refused) and report."""
    candidate = validate_candidate(folder, source, extra_trusted)
    model = candidate_model(folder, source, candidate)
    report = candidate.report
    report.methods = supported_methods(model)
    spaces: list[OutputSpace] = (
        ["log_odds", "probability"] if model.predictor.is_classifier else ["raw"]
    )
    for space in spaces:
        summary = ShapSummary.model_validate(
            ShapExplainer(model, ShapOptions(output=space)).summary()
        )
        report.shap[space] = summary
        if summary.fallback_reason:
            report.warnings.append(
                f"SHAP in {space} space uses {summary.algorithm}: {summary.fallback_reason}"
            )
    return report


def registration_document(
    folder: Path, source: str, extra_trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """:func:`registration_report` as JSON (what a worker answers, from an isolated child)."""
    return registration_report(folder, source, extra_trusted).model_dump(mode="json")


def candidate_model(folder: Path, source: str, candidate: ValidatedCandidate) -> LoadedModel:
    """The candidate as a loaded model (not registered: it has its would-be version id)."""
    manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
    files = {name: (folder / name).read_bytes() for name in candidate.manifest.data_files()}
    digest = content_hash(manifest_bytes, files)
    version = ModelVersion(
        name=candidate.manifest.name,
        version_id=digest[:VERSION_ID_LENGTH],
        content_hash=digest,
        manifest_hash=hashlib.sha256(manifest_bytes).hexdigest(),
        path=folder,
        manifest=candidate.manifest,
        registered_at="",
        source=source,
    )
    loaded = LoadedModel(version=version, predictor=candidate.predictor)
    return loaded.with_reference(candidate.data["reference"].rows)
