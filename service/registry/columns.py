"""Map a preprocessor's output columns back to the raw input features they came from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

# Transformers whose output column i depends on input column i only.
ELEMENTWISE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, OrdinalEncoder)


def column_features(preprocessor: Any, feature_names: Sequence[str]) -> list[int] | None:
    """For each output column, the index of its raw feature; None if not column-separable."""
    if isinstance(preprocessor, Pipeline):
        steps = [s for _, s in preprocessor.steps if s not in (None, "passthrough")]
        if len(steps) == 1:
            return column_features(steps[0], feature_names)
        return None
    if isinstance(preprocessor, ColumnTransformer):
        return _column_transformer(preprocessor, list(feature_names))
    return None


def _column_transformer(ct: ColumnTransformer, feature_names: list[str]) -> list[int] | None:
    inputs = list(getattr(ct, "feature_names_in_", feature_names))
    total = sum(sl.stop - sl.start for sl in ct.output_indices_.values())
    owner: list[int | None] = [None] * total
    for name, transformer, columns in ct.transformers_:
        out = ct.output_indices_.get(name)
        if transformer == "drop" or out is None or out.stop == out.start:
            continue
        names = _column_names(columns, inputs)
        widths = _widths(transformer, len(names))
        if widths is None or sum(widths) != out.stop - out.start:
            return None
        position = out.start
        for column, width in zip(names, widths, strict=True):
            if column not in feature_names:
                return None
            owner[position : position + width] = [feature_names.index(column)] * width
            position += width
    if any(o is None for o in owner):
        return None
    return [int(o) for o in owner if o is not None]


def _widths(transformer: Any, n_inputs: int) -> list[int] | None:
    if transformer == "passthrough":
        return [1] * n_inputs
    if isinstance(transformer, Pipeline):
        steps = [s for _, s in transformer.steps if s not in (None, "passthrough")]
        *head, last = steps
        if all(_elementwise(s) for s in head):
            return _widths(last, n_inputs)
        return None
    if isinstance(transformer, OneHotEncoder):
        if getattr(transformer, "_infrequent_enabled", False):
            return None
        drop = transformer.drop_idx_
        return [
            len(cats) - (0 if drop is None or drop[i] is None else 1)
            for i, cats in enumerate(transformer.categories_)
        ]
    if _elementwise(transformer):
        return [1] * n_inputs
    return None


def _elementwise(transformer: Any) -> bool:
    if isinstance(transformer, SimpleImputer):
        return not transformer.add_indicator
    if isinstance(transformer, FunctionTransformer):  # 'passthrough' once fitted
        return transformer.func is None
    return isinstance(transformer, ELEMENTWISE)


def _column_names(columns: Any, inputs: list[str]) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return inputs[columns]
    values = list(np.asarray(columns).ravel())
    if values and isinstance(values[0], (bool, np.bool_)):
        return [c for c, keep in zip(inputs, values, strict=True) if keep]
    return [inputs[int(v)] if not isinstance(v, str) else v for v in values]
