"""The checks a remote candidate passes before it is registered, and its fingerprint.

Called from :func:`service.registry.validation.validate_candidate` once the generic
checks (data files readable, the endpoint scores them) passed: the endpoint's answers on
the reference rows are examined and fingerprinted into ``fingerprint.json`` in the
candidate's folder, which the registration then stores with the version (so the
version id depends on it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.errors import InvalidRequestError, Issue, ServiceError
from service.registry.loaded import read_labels, read_rows
from service.registry.manifest import Manifest
from service.registry.predictors import Predictor
from service.registry.remote.fingerprint import Fingerprint
from service.registry.remote.predictor import RemotePredictor
from service.registry.remote.spec import FINGERPRINT_FILE, RemoteArtifact, RemoteOutput


def register_remote(folder: Path, manifest: Manifest, predictor: Predictor) -> dict[str, Any]:
    """Refuse an endpoint whose answers cannot be right; write the fingerprint; return
    what was measured."""
    assert isinstance(predictor, RemotePredictor)
    artifact = manifest.artifact
    assert isinstance(artifact, RemoteArtifact)
    reference = read_rows(folder / manifest.reference_data.path, manifest)
    try:
        answers = predictor.answers(reference)
    except ServiceError as exc:
        raise _refused(("manifest", "artifact", "url"), exc.message) from exc
    scores = predictor.reader.probability(answers)
    if predictor.is_classifier and artifact.output is RemoteOutput.probability:
        if np.all((answers == 0.0) | (answers == 1.0)):
            raise _refused(
                ("manifest", "artifact", "output_name"),
                f"{artifact.endpoint} answers only 0 and 1 on the reference rows: that looks "
                "like class labels, not probabilities; name the probability output in "
                "artifact.output_name (MLServer's scikit-learn runtime: predict_proba)",
            )
    summary: dict[str, Any] = {"endpoint": artifact.endpoint}
    auc = _orientation(folder, manifest, predictor, scores)
    if auc is not None:
        summary["orientation_auc"] = auc
    fingerprint = Fingerprint.of(answers)
    (folder / FINGERPRINT_FILE).write_bytes(fingerprint.to_json())
    summary |= {
        "fingerprint": fingerprint.digest,
        "fingerprint_rows": int(answers.shape[0]),
        "output_columns": int(answers.shape[1]),
    }
    return {"remote": summary}


def fingerprint_file(folder: Path, manifest: Manifest) -> dict[str, bytes]:
    """The file a validated remote candidate adds to its version (empty for local ones)."""
    if not manifest.is_remote:
        return {}
    return {FINGERPRINT_FILE: (folder / FINGERPRINT_FILE).read_bytes()}


def _orientation(
    folder: Path, manifest: Manifest, predictor: RemotePredictor, reference_scores: np.ndarray
) -> float | None:
    """ROC AUC of the favourable class's score on labelled rows (evaluation, else
    reference); below 0.5 the output's class order is taken to be the other way round."""
    if not predictor.is_classifier:
        return None
    candidates = [(manifest.evaluation_data, None), (manifest.reference_data, reference_scores)]
    for data, known in candidates:
        if data is None:
            continue
        labels = read_labels(folder / data.path, manifest)
        if labels is None or not 0 < labels.sum() < len(labels):
            continue
        if known is None:
            known = predictor.probability(read_rows(folder / data.path, manifest))
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(labels, known))
        if auc < 0.5:
            classes = manifest.classes or []
            raise _refused(
                ("manifest", "classes"),
                f"{data.path}: the endpoint's scores for the favourable class "
                f"'{manifest.favourable_class}' have ROC AUC {auc:.3f} < 0.5 against the "
                f"labels in '{manifest.target}': they rank the rows backwards. Likely cause: "
                f"the endpoint's output columns are in the other class order; list classes "
                f"as {list(reversed(classes))} (the order of the endpoint's columns)",
            )
        return auc
    return None


def _refused(loc: tuple[str, ...], message: str) -> InvalidRequestError:
    return InvalidRequestError([Issue(loc, message, "remote_endpoint")])
