"""Typed frames are built as pandas' public constructor builds them, whichever path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.registry.loaded import STRING, frame_of, typed_frame
from service.registry.manifest import Manifest

from .toy import FEATURES, manifest_dict, synthetic_data


def public(names: list[str], arrays: list[object]) -> pd.DataFrame:
    return pd.DataFrame(dict(zip(names, arrays, strict=True)))


@pytest.mark.parametrize("rows", [1, 3, 1200])
def test_frame_of_equals_the_public_constructor(rows: int) -> None:
    rng = np.random.default_rng(rows)
    names = ["a", "b", "c", "d"]
    arrays = [
        rng.normal(size=rows),
        pd.array(rng.choice(["x", "y"], rows).tolist(), dtype=STRING),
        rng.integers(0, 9, rows).astype(float),
        pd.array(["z"] * rows, dtype=STRING),
    ]
    built, expected = frame_of(names, arrays), public(names, arrays)
    pd.testing.assert_frame_equal(built, expected, check_exact=True)
    assert built.index.equals(pd.RangeIndex(rows)) and list(built.columns) == names
    # a frame of its own: changing it leaves the other untouched, and it can be grown
    built.loc[0, "a"] = 99.0
    built["e"] = 1.0
    assert expected.loc[0, "a"] != 99.0 and "e" not in expected


def test_frame_of_falls_back_on_uneven_or_repeated_columns() -> None:
    with pytest.raises(ValueError):
        frame_of(["a", "b"], [np.zeros(2), np.zeros(3)])
    repeated = frame_of(["a", "a"], [np.zeros(2), np.ones(2)])
    assert list(repeated.columns) == ["a"] and repeated["a"].tolist() == [1.0, 1.0]


def test_typed_frame_types_every_feature() -> None:
    manifest = Manifest.model_validate(manifest_dict("toy", "skops"))
    data = synthetic_data(5)
    columns = {name: data[name].tolist() for name in FEATURES}
    columns["housing"] = ["rent", 3, "own", "free", "rent"]  # a non-string is made a string
    frame = typed_frame(manifest, columns)
    assert list(frame.columns) == FEATURES
    assert frame["income"].dtype == np.float64 and frame["housing"].dtype == STRING
    assert frame["housing"].tolist() == ["rent", "3", "own", "free", "rent"]
    assert frame["income"].tolist() == data["income"].tolist()
