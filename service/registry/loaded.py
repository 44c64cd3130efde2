"""A model version loaded into memory: predictor, typed reference data and predictions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from service.registry.artifacts import load_predictor
from service.registry.manifest import FeatureType, Manifest
from service.registry.predictors import Predictor
from service.registry.store import ModelVersion


@dataclass
class LoadedModel:
    """Everything a worker needs about one model version, built once."""

    version: ModelVersion
    predictor: Predictor

    @classmethod
    def load(cls, version: ModelVersion, extra_trusted: Iterable[str] = ()) -> LoadedModel:
        artifact = version.file(version.manifest.artifact.path)
        predictor = load_predictor(version.manifest, artifact, version.source, extra_trusted)
        model = cls(version=version, predictor=predictor)
        predictor.speed_up(model.proof_rows())
        return model

    def proof_rows(self) -> pd.DataFrame:
        """The reference rows, then rows that take every category of every feature (with
        the reference's numbers): what a faster path must score exactly alike."""
        reference = self.reference
        longest = max((len(f.categories or []) for f in self.manifest.features), default=0)
        if longest == 0 or reference.empty:
            return reference
        picks = np.arange(longest) % len(reference)
        columns: dict[str, list[Any]] = {}
        for feature in self.manifest.features:
            if feature.categories:
                columns[feature.name] = [
                    feature.categories[i % len(feature.categories)] for i in range(longest)
                ]
            else:
                columns[feature.name] = reference[feature.name].to_numpy()[picks].tolist()
        every = typed_frame(self.manifest, columns)
        return pd.concat([reference, every], ignore_index=True)

    @property
    def manifest(self) -> Manifest:
        return self.version.manifest

    @cached_property
    def reference(self) -> pd.DataFrame:
        """The reference (background) rows, typed as the model expects."""
        return read_rows(self.version.file(self.manifest.reference_data.path), self.manifest)

    def with_reference(self, rows: pd.DataFrame) -> LoadedModel:
        """The same version and predictor with other reference rows (e.g. a policy baseline
        population) for explainers that measure against the reference."""
        other = LoadedModel(version=self.version, predictor=self.predictor)
        other.__dict__["reference"] = rows.reset_index(drop=True)  # fills the cached property
        return other

    def frame(self, instances: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Validated instances as a frame with one typed column per raw feature."""
        return typed_frame(
            self.manifest, {f: [row[f] for row in instances] for f in self.manifest.feature_names}
        )

    def predictions(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Label and probability (classifiers) or value (regression) per row."""
        if not self.predictor.is_classifier:
            return [{"value": float(v)} for v in self.predictor.margin(frame)]
        threshold = self.manifest.decision_threshold
        favourable, other = self.manifest.favourable_class, self.manifest.unfavourable_class
        out = []
        for p in self.predictor.probability(frame):
            p = float(p)
            out.append(
                {
                    "label": favourable if p >= threshold else other,
                    "probability": p,
                    "probabilities": {favourable: p, other: 1.0 - p},
                    "threshold": threshold,
                }
            )
        return out


# What .astype(str) gives, resolved once (a dtype named by a string is looked up per call).
STRING = pd.Series([], dtype=object).astype(str).dtype
_STRING_ARRAY = STRING.construct_array_type()


def typed_frame(manifest: Manifest, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """One float column per numeric feature, one string column per other feature."""
    arrays: list[Any] = []
    for feature in manifest.features:
        values = columns[feature.name]
        if feature.type is FeatureType.numeric:
            arrays.append(np.asarray(values, dtype=float))
        elif all(type(v) is str for v in values):
            # the dtype's own constructor, as pd.array calls it, without its inference
            arrays.append(_STRING_ARRAY._from_sequence(list(values), dtype=STRING))
        else:
            arrays.append(pd.Series(list(values), dtype=object).astype(str).array)
    return frame_of(manifest.feature_names, arrays)


def frame_of(names: Sequence[str], arrays: Sequence[Any]) -> pd.DataFrame:
    """A frame of these 1-D column arrays (float64 ndarrays or pandas arrays), as
    ``pd.DataFrame(dict(zip(names, arrays)))`` builds it."""
    lengths = {len(a) for a in arrays}
    build = getattr(pd.DataFrame, "_from_arrays", None)
    if build is None or len(lengths) != 1 or len(set(names)) != len(names):
        return pd.DataFrame(dict(zip(names, arrays, strict=True)))
    # pandas' constructor for arrays already checked, which skips re-checking each one
    # (4x faster for one applicant; a tested equality guards pandas upgrades)
    return build(  # type: ignore[no-any-return]
        list(arrays), pd.Index(list(names)), pd.RangeIndex(lengths.pop()), verify_integrity=False
    )


def read_rows(path: Any, manifest: Manifest) -> pd.DataFrame:
    """Read a CSV of rows (extra columns such as the target are dropped)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [f for f in manifest.feature_names if f not in raw.columns]
    if missing:
        raise ValueError(f"{_file_name(path)} lacks feature columns {missing}")
    columns: dict[str, list[Any]] = {}
    for feature in manifest.features:
        values = raw[feature.name].tolist()
        if feature.type is FeatureType.numeric:
            columns[feature.name] = [float(v) for v in values]
        else:
            unknown = sorted(set(values) - set(feature.categories or []))
            if unknown:
                raise ValueError(
                    f"{_file_name(path)}: {feature.name} has values {unknown} not in categories"
                )
            columns[feature.name] = values
    return typed_frame(manifest, columns)


def read_labels(path: Any, manifest: Manifest) -> np.ndarray | None:
    """The target column of a CSV, as 1 = favourable (classifiers) or the value."""
    if manifest.target is None:
        return None
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if manifest.target not in raw.columns:
        return None
    if manifest.favourable_class is not None:
        return (raw[manifest.target] == manifest.favourable_class).to_numpy(dtype=int)
    return raw[manifest.target].astype(float).to_numpy()


def _file_name(path: Any) -> str:
    return getattr(path, "name", str(path))
