"""``xai-service manifest draft``: a starting manifest, as commented YAML, for review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from service.registry.draft_infer import (
    ArtifactFacts,
    DraftError,
    FeatureDraft,
    category_key,
    infer_feature,
    model_name,
    protected_match,
    read_artifact,
)
from service.registry.manifest import ArtifactFormat, Manifest

REFERENCE_FILE, EVALUATION_FILE = "reference.csv", "evaluation.csv"
CLEAR_AUC = 0.6  # a measured orientation is written only when the scores rank clearly


def draft_manifest(
    data: Path,
    target: str,
    artifact: Path | None = None,
    fmt: ArtifactFormat | None = None,
    name: str | None = None,
    favourable: str | None = None,
) -> str:
    """The manifest text for a model trained on ``data`` with label column ``target``."""
    raw = pd.read_csv(data, dtype=str, keep_default_na=False, na_filter=False)
    if target not in raw.columns:
        raise DraftError(f"{data.name} has no column '{target}'; its columns: {list(raw.columns)}")
    facts = read_artifact(artifact, fmt) if artifact is not None else None
    columns = [c for c in raw.columns if c != target]
    order = columns
    if facts is not None and facts.features:
        missing = [f for f in facts.features if f not in raw.columns]
        if missing:
            raise DraftError(f"the model's inputs {missing} are not columns of {data.name}")
        order = facts.features
    unused = [c for c in columns if c not in order]
    unnamed = facts is not None and not facts.features
    stored = facts.categories if facts is not None else {}
    features = [
        _with_policy(infer_feature(c, raw[c], stored.get(c)), i) for i, c in enumerate(order)
    ]
    header = [
        f"Draft manifest written by `xai-service manifest draft` from {data.name}"
        + (f" and {artifact.name}" if artifact is not None else "")
        + ".",
        "Review every line and replace every TODO (registration refuses them), then:",
        f"  xai-service register --manifest manifest.yaml {artifact.name if artifact else 'MODEL'} "
        f"{REFERENCE_FILE} {EVALUATION_FILE}",
    ]
    if unused:
        header.append(f"Columns of {data.name} the model does not use (leave them out): {unused}")
    if unnamed:
        header.append(
            "REVIEW: the artifact does not name its inputs; the features are in the data's column "
            "order, which must be the order the model was trained on"
        )
    top: dict[str, Any] = {
        "schema_version": 1,
        "name": name or model_name(data.stem),
        "description": f"Drafted from {data.name}",
    }
    task_fields, notes = _task(raw[target], target, facts, favourable)
    top.update(task_fields)
    if "classes" in task_fields:
        top["decision_threshold"] = 0.5
    if facts is not None and artifact is not None:
        artifact_spec: dict[str, Any] = {"path": artifact.name, "format": facts.format.value}
        if "classes" in task_fields and facts.format is not ArtifactFormat.skops:
            notes.update(_measure_positive(top, artifact_spec, features, raw, artifact))
            if "positive_class" in artifact_spec:
                top["classes"] = _negative_first(top["classes"], artifact_spec["positive_class"])
    else:
        artifact_spec = {"path": "model.skops", "format": "skops"}
        notes["artifact"] = (
            "REVIEW: the artifact's file name and format (skops, xgboost-json, xgboost-ubj, "
            "lightgbm-text); draft with --model to take the feature order from it"
        )
    top["artifact"] = artifact_spec
    top["reference_data"] = {"path": REFERENCE_FILE, "description": "reference rows"}
    top["evaluation_data"] = {"path": EVALUATION_FILE, "description": "held-out rows"}
    notes["reference_data"] = (
        f"{REFERENCE_FILE}: background rows for the explainers (e.g. 200 training rows), the "
        "feature columns and optionally the target"
    )
    notes["evaluation_data"] = (
        f"{EVALUATION_FILE}: held-out rows with the target, to measure the model and check the "
        "orientation of its score"
    )
    return _render(header, top, notes, features)


def _with_policy(draft: FeatureDraft, index: int) -> FeatureDraft:
    """Protected attributes flagged for review; everyone else gets a reason placeholder."""
    token = protected_match(draft.spec["name"])
    if token is not None:
        draft.spec.update(mutable=False, protected=True)
        draft.notes.insert(
            0,
            f"REVIEW: looks like a protected attribute (name contains '{token}'): never a "
            "reason, never changed in recourse. Remove protected/mutable if it is not",
        )
    else:
        draft.spec["reason"] = {
            "code": f"R{index + 1:02d}",
            "statement": f"TODO: the statement an applicant reads when {draft.spec['name']} "
            "counts against them",
        }
    return draft


def _task(
    labels: pd.Series, target: str, facts: ArtifactFacts | None, favourable: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Task, target and classes from the labels (scikit-learn: in the model's order)."""
    values = sorted(set(labels) - {""}, key=category_key)
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").notna().all()
    if len(values) > 2 and numeric:
        return {"task": "regression", "target": target}, {}
    if len(values) != 2:
        raise DraftError(
            f"target '{target}' has {len(values)} distinct values: binary classification needs "
            "two, regression numbers (multiclass is not supported)"
        )
    notes: dict[str, str] = {}
    classes = values
    if facts is not None and facts.classes is not None:
        if sorted(facts.classes) != sorted(values):
            raise DraftError(f"the model's classes {facts.classes} are not the labels {values}")
        classes = facts.classes
        notes["classes"] = "scikit-learn: the order comes from the model's classes_"
    if favourable is not None and favourable not in classes:
        raise DraftError(f"--favourable '{favourable}' is not one of the labels {classes}")
    notes["favourable_class"] = "the outcome that approves the applicant"
    fields = {
        "task": "binary_classification",
        "target": target,
        "classes": classes,
        "favourable_class": favourable or f"TODO: {' or '.join(classes)}",
    }
    return fields, notes


def _measure_positive(
    top: dict[str, Any],
    artifact: dict[str, Any],
    features: list[FeatureDraft],
    raw: pd.DataFrame,
    path: Path,
) -> dict[str, str]:
    """Which class a booster's raw score is for, measured on the data (ROC AUC >= 0.5)."""
    from sklearn.metrics import roc_auc_score

    from service.registry.artifacts import load_predictor
    from service.registry.loaded import typed_frame

    classes = top["classes"]
    probe = {
        **top,
        "favourable_class": classes[1],
        "artifact": {"path": path.name, "format": artifact["format"]},
        "reference_data": {"path": REFERENCE_FILE},
        "features": [f.spec for f in features],
    }
    try:
        manifest = Manifest.model_validate(probe)
        rows = typed_frame(manifest, {f.name: raw[f.name].tolist() for f in manifest.features})
        margin = load_predictor(manifest, path, "cli").margin(rows)
        auc = float(roc_auc_score((raw[top["target"]] == classes[1]).to_numpy(), margin))
    except Exception as exc:  # noqa: BLE001 - the draft still helps without it
        return {"artifact": f"REVIEW: positive_class not measured ({exc}); set it"}
    shown = max(auc, 1 - auc)
    if shown < CLEAR_AUC:
        return {
            "artifact": f"REVIEW: positive_class not set: the booster's raw score has ROC AUC "
            f"{auc:.3f} for '{classes[1]}' on the data, too close to 0.5 to tell (are the "
            "categories in the order used in training?)"
        }
    scored = classes[1] if auc >= 0.5 else classes[0]
    artifact["positive_class"] = scored
    return {
        "artifact": f"positive_class: measured on the data, the booster's raw score has ROC AUC "
        f"{shown:.3f} for '{scored}' (its label 1 in training)"
    }


def _negative_first(classes: list[str], positive: str) -> list[str]:
    return [c for c in classes if c != positive] + [positive]


def _render(
    header: list[str], top: dict[str, Any], notes: dict[str, str], features: list[FeatureDraft]
) -> str:
    lines = [f"# {line}" for line in header]
    for key, value in top.items():
        if key in notes:
            lines.append(f"# {notes[key]}")
        lines.append(_dump({key: value}))
    lines.append("features:")
    for feature in features:
        lines.extend(f"# {note}" for note in feature.notes)
        lines.append(_dump([feature.spec]))
    return "\n".join(lines) + "\n"


def _dump(value: Any) -> str:
    return yaml.safe_dump(
        _plain(value), sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    ).rstrip("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
