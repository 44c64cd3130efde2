"""Which rows a global method looks at: supplied rows, the evaluation set or the reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from service.errors import invalid
from service.registry.loaded import LoadedModel, read_labels, read_rows


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
    labels = read_labels(path, manifest)
    if labels is None:
        raise invalid(("body", "methods"), "the evaluation set has no label column")
    source = f"evaluation set: {manifest.evaluation_data.description or 'held-out rows'}"
    return GlobalData(read_rows(path, manifest), labels, source)


def unlabelled(model: LoadedModel, request: GlobalData | None) -> GlobalData:
    """The request's rows, else the version's reference data."""
    if request is not None:
        return request
    description = model.manifest.reference_data.description or "reference rows"
    return GlobalData(model.reference, None, f"reference data: {description}")


def encode_labels(model: LoadedModel, labels: Sequence[Any] | None) -> np.ndarray | None:
    """Class names as 1 = favourable / 0, regression values as floats."""
    if labels is None:
        return None
    favourable = model.manifest.favourable_class
    if favourable is not None:
        return np.array([1 if str(v) == favourable else 0 for v in labels], dtype=int)
    return np.asarray(labels, dtype=float)
