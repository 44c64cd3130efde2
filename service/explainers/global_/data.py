"""Which rows a global method looks at: supplied rows, the evaluation set or the reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from service.errors import ConflictError, invalid
from service.registry.loaded import LoadedModel, read_rows
from service.registry.manifest import Manifest

MAX_NAMED = 5


@dataclass(frozen=True)
class GlobalData:
    """Rows (typed frame), their labels when known (1 = favourable, or the value) and where
    they came from."""

    frame: pd.DataFrame
    labels: np.ndarray | None
    source: str

    def info(self) -> dict[str, Any]:
        return {"rows": len(self.frame), "source": self.source}

    def sample(self, max_rows: int | None, seed: int) -> GlobalData:
        """At most ``max_rows`` rows, drawn without replacement with ``seed``."""
        if max_rows is None or max_rows >= len(self.frame):
            return self
        picked = np.sort(np.random.default_rng(seed).choice(len(self.frame), max_rows, False))
        labels = None if self.labels is None else self.labels[picked]
        frame = self.frame.iloc[picked].reset_index(drop=True)
        return GlobalData(frame, labels, f"{self.source} (sample of {max_rows})")


def supplied(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], labels: Sequence[Any] | None
) -> GlobalData:
    """Rows sent with the request (already validated), with their labels if any."""
    return GlobalData(model.frame(rows), encode_labels(model, labels), "request rows")


def labelled(model: LoadedModel, request: GlobalData | None) -> GlobalData:
    """Held-out labelled rows: the request's (if labelled) or the version's evaluation set."""
    if request is not None:
        if request.labels is None:
            raise invalid(("body", "labels"), "permutation importance needs labels for the rows")
        return request
    manifest = model.manifest
    if manifest.evaluation_data is None:
        raise invalid(
            ("body", "methods"),
            "permutation importance needs labelled rows: this version has no evaluation set; "
            "send rows with labels",
        )
    path = model.version.file(manifest.evaluation_data.path)
    labels = evaluation_labels(path, manifest)
    source = f"evaluation set: {manifest.evaluation_data.description or 'held-out rows'}"
    return GlobalData(read_rows(path, manifest), labels, source)


def unlabelled(model: LoadedModel, request: GlobalData | None) -> GlobalData:
    """The request's rows, else the version's reference data."""
    if request is not None:
        return request
    description = model.manifest.reference_data.description or "reference rows"
    return GlobalData(model.reference, None, f"reference data: {description}")


def label_text(value: Any) -> str:
    """A label as the class name it must equal: a whole number sent as JSON (``1`` or
    ``1.0``) names the class ``"1"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_labels(model: LoadedModel, labels: Sequence[Any] | None) -> np.ndarray | None:
    """Class names as 1 = favourable / 0, regression values as floats; a label that is not
    one of the declared classes is refused, never counted as the unfavourable one."""
    if labels is None:
        return None
    manifest = model.manifest
    if manifest.favourable_class is None:
        return np.asarray(labels, dtype=float)
    texts = [label_text(v) for v in labels]
    for i, text in enumerate(texts):
        if text not in (manifest.classes or []):
            msg = f"must be one of the classes {manifest.classes}"
            raise invalid(("body", "labels", i), msg, "enum")
    return np.array([1 if t == manifest.favourable_class else 0 for t in texts], dtype=int)


def evaluation_labels(path: Any, manifest: Manifest) -> np.ndarray:
    """The evaluation set's labels (1 = favourable, or the values). Labels that are not
    the declared classes, or a single class, make permutation importance undefined (a
    metric of NaN, shown as nulls): refused with the reason instead."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if manifest.target is None or manifest.target not in raw.columns:
        raise ConflictError(
            f"the evaluation set has no label column '{manifest.target}' (the manifest's target)"
        )
    values = raw[manifest.target]
    if manifest.favourable_class is None:
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            bad = values[numbers.isna()].unique().tolist()[:MAX_NAMED]
            raise ConflictError(f"the evaluation set's target has non-numbers {bad}")
        return numbers.to_numpy(dtype=float)
    classes = manifest.classes or []
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise ConflictError(
            f"the evaluation set's labels {unknown[:MAX_NAMED]} are not the declared classes "
            f"{classes}: permutation importance cannot score them; register a version whose "
            "evaluation labels are its classes"
        )
    if values.nunique() < 2:
        raise ConflictError(
            f"the evaluation set has only the class {values.iloc[0]!r}: permutation "
            "importance needs both classes"
        )
    return (values == manifest.favourable_class).to_numpy(dtype=int)
