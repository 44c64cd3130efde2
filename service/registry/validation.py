"""Check a candidate version before it is registered: placeholders, safe load, data files,
predictions, the orientation of a classifier's score and its quality on labelled rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import InvalidRequestError, Issue
from service.registry.artifacts import UnsafeArtifactError, load_predictor
from service.registry.datafiles import CheckedData, DataFileError, check_data_file
from service.registry.load_errors import detail, load_failure
from service.registry.manifest import DataFile, Manifest, Task, parse_manifest
from service.registry.placeholders import placeholder_issues_in
from service.registry.predictors import ManifestMismatchError, Predictor
from service.registry.report import (
    DataFileReport,
    DataRole,
    DeclaredBy,
    Orientation,
    Performance,
    RegistrationReport,
)
from service.registry.schema import MAX_ISSUES
from service.registry.store import MANIFEST_FILE


class CandidateError(ValueError):
    """The candidate version cannot be registered; the message says why."""


@dataclass
class ValidatedCandidate:
    """A candidate that passed every check, with what was measured on it."""

    manifest: Manifest
    predictor: Predictor
    data: dict[str, CheckedData]  # by role: reference, evaluation
    report: RegistrationReport


def validate_candidate(
    folder: Path, source: str, extra_trusted: Iterable[str] = ()
) -> ValidatedCandidate:
    """Refuse what would be wrong (raises); otherwise return the candidate and its report."""
    manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    placeholders = placeholder_issues(manifest)
    if placeholders:
        raise InvalidRequestError(placeholders)
    predictor = _load(manifest, folder, source, extra_trusted)
    expected = getattr(getattr(predictor, "model", None), "feature_names_in_", None)
    if expected is not None and set(map(str, expected)) != set(manifest.feature_names):
        raise CandidateError(
            f"model inputs {sorted(map(str, expected))} differ from manifest features"
        )
    data = _data_files(folder, manifest)
    scores = {role: _scores(predictor, checked) for role, checked in data.items()}
    report = RegistrationReport(
        task=manifest.task.value,
        data=[
            DataFileReport(
                role=c.role, file=c.file, rows=len(c.rows), labelled=c.labels is not None
            )
            for c in data.values()
        ],
    )
    if manifest.is_remote:  # the endpoint's checks and fingerprint (service/registry/remote/)
        from service.registry.remote.registration import register_remote

        report.remote = register_remote(folder, manifest, predictor)["remote"]
    elif predictor.is_classifier:
        report.orientation = _orientation(manifest, predictor, data, scores, report.warnings)
    evaluation = data.get("evaluation")
    if evaluation is not None and evaluation.labels is not None:
        report.evaluation = _performance(manifest, evaluation, scores["evaluation"])
        if predictor.is_classifier and report.evaluation.roc_auc is None:
            report.warnings.append(
                f"the labels of {evaluation.file} are all one class: ROC AUC not measured"
            )
    else:
        report.warnings.append(
            "no labelled evaluation data: the model's quality was not measured"
            + ("" if evaluation is None else f" ({evaluation.file} has no target column)")
        )
    return ValidatedCandidate(manifest, predictor, data, report)


def validated_report(
    folder: Path, source: str, extra_trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """The registry's part of the registration report, as JSON (raises when refused)."""
    return validate_candidate(folder, source, extra_trusted).report.model_dump(mode="json")


def _data_files(folder: Path, manifest: Manifest) -> dict[str, CheckedData]:
    """Every data file checked; the problems of all of them refused together."""
    files: dict[DataRole, DataFile | None] = {
        "reference": manifest.reference_data,
        "evaluation": manifest.evaluation_data,
    }
    checked: dict[str, CheckedData] = {}
    issues: list[Issue] = []
    for role, data in files.items():
        if data is None:
            continue
        try:
            checked[role] = check_data_file(folder / data.path, manifest, role)
        except DataFileError as exc:
            issues += exc.issues
    if issues:
        raise DataFileError(issues[:MAX_ISSUES])
    return checked


def placeholder_issues(manifest: Manifest) -> list[Issue]:
    """Every text still a ``TODO`` placeholder (as ``manifest draft`` writes them)."""
    return placeholder_issues_in(manifest.model_dump(mode="json", exclude_none=True))


def _load(manifest: Manifest, folder: Path, source: str, extra_trusted: Iterable[str]) -> Predictor:
    artifact = folder / manifest.artifact.path
    try:
        return load_predictor(manifest, artifact, source, extra_trusted)
    except UnsafeArtifactError:
        raise
    except ManifestMismatchError as exc:
        raise InvalidRequestError(
            [Issue(("manifest", *exc.loc), str(exc), "manifest_mismatch")]
        ) from exc
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign files
        raise CandidateError(load_failure(manifest.artifact.format, artifact, exc)) from exc


def _scores(predictor: Predictor, checked: CheckedData) -> np.ndarray:
    try:
        scores = predictor.probability(checked.rows)
    except Exception as exc:  # noqa: BLE001
        raise CandidateError(
            f"model failed to predict on {checked.role} data: {detail(exc)}"
        ) from exc
    if scores.shape != (len(checked.rows),) or not np.all(np.isfinite(scores)):
        raise CandidateError(f"model gave malformed predictions on {checked.role} data")
    return scores


def _orientation(
    manifest: Manifest,
    predictor: Predictor,
    data: dict[str, CheckedData],
    scores: dict[str, np.ndarray],
    warnings: list[str],
) -> Orientation:
    """Which class the score is for; refused when labelled rows rank backwards (AUC < 0.5)."""
    favourable, other = str(manifest.favourable_class), str(manifest.unfavourable_class)
    positive = favourable if predictor.output_sign > 0 else other
    declared_by: DeclaredBy
    if not manifest.artifact.is_booster:
        declared_by = "classes_"
    elif manifest.artifact.positive_class is not None:
        declared_by = "artifact.positive_class"
    else:
        declared_by = "classes[1]"
    orientation = Orientation(
        positive_class=positive,
        declared_by=declared_by,
        favourable_class=favourable,
    )
    both = [
        (c, c.labels)
        for c in (data.get("evaluation"), data["reference"])
        if c is not None and c.labels is not None and 0 < c.labels.sum() < len(c.labels)
    ]
    if not both:
        if manifest.artifact.is_booster:
            warnings.append(
                f"orientation not checked: no labelled rows with both classes; the booster's raw "
                f"score is taken to be for '{positive}' ({declared_by}). Register with "
                "evaluation data (the target column) to have it checked"
            )
        return orientation
    checked, labels = both[0]
    auc = _roc_auc(labels, scores[checked.role])
    if auc < 0.5:
        raise InvalidRequestError([_inverted(manifest, orientation, checked, auc)])
    if checked.role == "reference":
        warnings.append(
            f"orientation checked on the reference rows ({checked.file}, ROC AUC {auc:.3f}), "
            "not on held-out evaluation rows"
        )
    orientation.checked_on = checked.file
    return orientation


def _inverted(
    manifest: Manifest, orientation: Orientation, checked: CheckedData, auc: float
) -> Issue:
    favourable, positive = orientation.favourable_class, orientation.positive_class
    other = next(c for c in manifest.classes or [] if c != positive)
    head = (
        f"{checked.file}: the model's scores for the favourable class '{favourable}' have ROC "
        f"AUC {auc:.3f} < 0.5 against the labels in column '{manifest.target}': they rank the "
        "rows backwards."
    )
    if orientation.declared_by == "classes_":
        return Issue(
            ("manifest", "favourable_class"),
            f"{head} A scikit-learn model's class order comes from its classes_, so check that "
            f"favourable_class is the outcome the model should approve, that the labels mean "
            "what the classes say, and that the artifact was trained on this data.",
            "inverted_scores",
        )
    fix = f"set artifact.positive_class: {other}"
    if orientation.declared_by == "classes[1]":
        fix += f" (or list classes as [{positive}, {other}])"
    return Issue(
        ("manifest", "artifact", "positive_class"),
        f"{head} Likely cause: inverted class order. The booster's raw score is taken to be for "
        f"'{positive}' ({orientation.declared_by}), but it was probably trained with '{other}' "
        f"as label 1: {fix}.",
        "inverted_scores",
    )


def _performance(manifest: Manifest, checked: CheckedData, scores: np.ndarray) -> Performance:
    labels = checked.labels
    assert labels is not None
    performance = Performance(file=checked.file, rows=len(labels))
    if manifest.task is Task.regression:
        from sklearn.metrics import r2_score

        performance.r2 = float(r2_score(labels, scores)) if len(labels) > 1 else None
        performance.rmse = float(np.sqrt(np.mean((labels - scores) ** 2)))
        return performance
    threshold = manifest.decision_threshold
    performance.threshold = threshold
    performance.base_rate = float(labels.mean())
    performance.accuracy = float(np.mean((scores >= threshold).astype(int) == labels))
    if 0 < labels.sum() < len(labels):
        performance.roc_auc = _roc_auc(labels, scores)
    return performance


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))
