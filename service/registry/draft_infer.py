"""Infer a starting manifest from training data and (optionally) the model artifact.

Everything inferred is a proposal for review: types, categories, ranges and integer flags
from the data, features in the artifact's order, likely protected attributes flagged, and
reason statements left as ``TODO`` placeholders that registration refuses.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from service.registry.manifest import NAME_PATTERN, ArtifactFormat

EXTENSIONS = {
    ".skops": ArtifactFormat.skops,
    ".json": ArtifactFormat.xgboost_json,
    ".ubj": ArtifactFormat.xgboost_ubj,
    ".txt": ArtifactFormat.lightgbm_text,
}
# Name tokens of attributes lenders must not decide on (ECOA/Reg B, EU anti-discrimination).
PROTECTED_TOKENS = frozenset(
    "age birth dob sex gender marital married race racial ethnic ethnicity religion religious "
    "national nationality origin foreign citizen citizenship colour color disability disabled "
    "pregnancy pregnant".split()
)


class DraftError(ValueError):
    """The data (or artifact) does not allow a draft; the message says why."""


@dataclass
class ArtifactFacts:
    """What an artifact says about its inputs and outputs."""

    format: ArtifactFormat
    features: list[str] | None = None  # in the model's input order; None: unnamed
    categories: dict[str, list[str]] = field(default_factory=dict)  # stored by the booster
    classes: list[str] | None = None  # scikit-learn classes_
    model: Any = None


@dataclass
class FeatureDraft:
    spec: dict[str, Any]
    notes: list[str]


def read_artifact(path: Path, fmt: ArtifactFormat | None) -> ArtifactFacts:
    """Feature order (and stored categories, classes) of an artifact in a safe format."""
    fmt = fmt or EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DraftError(f"cannot tell the format of {path.name}: pass --format")
    if fmt is ArtifactFormat.skops:
        from service.registry.artifacts import TRUSTED_SKOPS_TYPES, _load_skops

        model = _load_skops(path, set(TRUSTED_SKOPS_TYPES))
        names = getattr(model, "feature_names_in_", None)
        classes = getattr(model, "classes_", None)
        return ArtifactFacts(
            fmt,
            None if names is None else [str(n) for n in names],
            classes=None if classes is None else [str(c) for c in classes],
            model=model,
        )
    if fmt in (ArtifactFormat.xgboost_json, ArtifactFormat.xgboost_ubj):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        categories = _xgboost_categories(path) if fmt is ArtifactFormat.xgboost_json else {}
        return ArtifactFacts(fmt, booster.feature_names, categories, model=booster)
    if fmt is ArtifactFormat.lightgbm_text:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(path))
        names = booster.feature_name()
        if names == [f"Column_{i}" for i in range(len(names))]:
            names = None
        return ArtifactFacts(fmt, names, _lightgbm_categories(booster), model=booster)
    raise DraftError(f"a draft reads skops, XGBoost JSON/UBJ or LightGBM text, not {fmt}")


def _xgboost_categories(path: Path) -> dict[str, list[str]]:
    """String categories XGBoost (>= 3.1) stores with a model trained on pandas categoricals."""
    learner = json.loads(path.read_bytes())["learner"]
    cats = learner["gradient_booster"]["model"].get("cats") or {}
    names = learner.get("feature_names") or []
    found: dict[str, list[str]] = {}
    for name, encoding in zip(names, cats.get("enc", []), strict=False):
        offsets, values = encoding.get("offsets") or [], encoding.get("values") or []
        if len(offsets) > 1:
            data = bytes(values)
            found[name] = [data[a:b].decode() for a, b in zip(offsets, offsets[1:], strict=False)]
    return found


def _lightgbm_categories(booster: Any) -> dict[str, list[str]]:
    """Categories of a LightGBM model trained on pandas categoricals (``pandas_categorical``)."""
    stored = getattr(booster, "pandas_categorical", None) or []
    indexes = booster.params.get("categorical_feature") or []
    indexes = [indexes] if isinstance(indexes, int) else list(indexes)
    names = booster.feature_name()
    return {
        names[int(i)]: [str(v) for v in values]
        for i, values in zip(indexes, stored, strict=False)
        if str(i).isdigit() and int(i) < len(names)
    }


def protected_match(name: str) -> str | None:
    """The token of ``name`` that suggests a protected attribute, if any."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    tokens = re.split(r"[^a-z0-9]+", spaced.lower())
    return next((t for t in tokens if t in PROTECTED_TOKENS), None)


def model_name(stem: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")[:64] or "model"
    return name if re.fullmatch(NAME_PATTERN, name) else f"m-{name}"[:64]


def infer_feature(name: str, values: pd.Series, categories: list[str] | None) -> FeatureDraft:
    """Type, categories or range and integer flag from a column of strings."""
    notes: list[str] = []
    empty = int((values == "").sum())
    if empty:
        notes.append(f"{empty} empty cells: the service needs a value in every cell")
    present = values[values != ""]
    numbers = pd.to_numeric(present, errors="coerce")
    numeric = categories is None and len(present) > 0 and bool(numbers.notna().all())
    spec: dict[str, Any] = {"name": name}
    if numeric and all(math.isfinite(v) for v in numbers):
        whole = bool((numbers == numbers.round()).all())
        low, high = float(numbers.min()), float(numbers.max())
        spec.update(type="numeric", range=[_plain(low, whole), _plain(high, whole)])
        if whole:
            spec["integer"] = True
        notes.append(
            "range: the smallest and largest value in the data; widen it to what you accept"
        )
    else:
        seen = sorted(set(present), key=category_key)
        if categories is not None:
            unknown = sorted(set(seen) - set(categories))
            if unknown:
                raise DraftError(f"column '{name}' has values {unknown} the model never saw")
            notes.append("categories: in the order the model stores them (do not reorder)")
            seen = categories
        else:
            notes.append(
                "categories: the values in the data; a booster receives each value's index in "
                "this list, so keep the order its training used. Ordered? Make it type: ordinal"
            )
        spec.update(type="categorical", categories=seen)
    return FeatureDraft(spec, notes)


def category_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _plain(number: float, whole: bool) -> float | int:
    return int(number) if whole else number
