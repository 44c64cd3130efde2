"""Check a candidate version before it is registered: safe load, data, predictions."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from service.registry.artifacts import UnsafeArtifactError, load_predictor
from service.registry.loaded import read_labels, read_rows
from service.registry.manifest import parse_manifest
from service.registry.store import MANIFEST_FILE


class CandidateError(ValueError):
    """The candidate version cannot be registered; the message says why."""


def validate_candidate(
    folder: Path, source: str, extra_trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """Load the artifact the safe way, read the data files and predict on them."""
    manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    try:
        predictor = load_predictor(manifest, folder / manifest.artifact.path, source, extra_trusted)
    except UnsafeArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign files
        raise CandidateError(
            f"artifact could not be loaded as {manifest.artifact.format}: {exc}"
        ) from exc
    expected = getattr(getattr(predictor, "model", None), "feature_names_in_", None)
    if expected is not None and set(map(str, expected)) != set(manifest.feature_names):
        raise CandidateError(
            f"model inputs {sorted(map(str, expected))} differ from manifest features"
        )
    summary: dict[str, Any] = {}
    for label, data in (
        ("reference", manifest.reference_data),
        ("evaluation", manifest.evaluation_data),
    ):
        if data is None:
            continue
        try:
            rows = read_rows(folder / data.path, manifest)
        except Exception as exc:  # noqa: BLE001
            raise CandidateError(f"{label} data {data.path}: {exc}") from exc
        if rows.empty:
            raise CandidateError(f"{label} data {data.path} has no rows")
        try:
            scores = predictor.probability(rows)
        except Exception as exc:  # noqa: BLE001
            raise CandidateError(f"model failed to predict on {label} data: {exc}") from exc
        if scores.shape != (len(rows),) or not np.all(np.isfinite(scores)):
            raise CandidateError(f"model gave malformed predictions on {label} data")
        summary[f"{label}_rows"] = len(rows)
        labels = read_labels(folder / data.path, manifest)
        if label == "evaluation" and labels is not None and predictor.is_classifier:
            from sklearn.metrics import roc_auc_score

            if 0 < labels.sum() < len(labels):
                summary["evaluation_auc"] = float(roc_auc_score(labels, scores))
    if manifest.is_remote:  # the endpoint's checks and fingerprint (service/registry/remote/)
        from service.registry.remote.registration import register_remote

        summary |= register_remote(folder, manifest, predictor)
    return summary
