"""Send each distinct row once: sampling explainers ask for many identical rows (SHAP's
hybrids repeat wherever a background row agrees with the instance, or coalitions repeat),
and a model's answer for a row does not depend on the other rows of the request.

Rows are compared exactly (column by column factorisation, combined in mixed radix and
renumbered before the key could overflow), not by hash. A large frame whose first rows
hold no repeat (LIME's random samples) is sent as it is, without the full comparison.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MIN_ROWS = 32  # below this the bookkeeping costs more than it saves
KEY_LIMIT = 2**62
PROBE_ROWS = 512  # a large frame whose first rows are all distinct is sent as it is


def distinct_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """(the distinct rows in first-seen order, the index of each row's distinct row), or
    (``frame``, None) when every row is distinct or the frame is small."""
    if len(frame) < MIN_ROWS or frame.shape[1] == 0:
        return frame, None
    if len(frame) > 4 * PROBE_ROWS and _row_keys(frame.iloc[:PROBE_ROWS]).max() == PROBE_ROWS - 1:
        return frame, None  # e.g. LIME's samples: no repeats among the first rows
    found = distinct_coded_rows(_factorized(frame), len(frame))
    if found is None:
        return frame, None
    first, inverse = found
    return frame.iloc[first].reset_index(drop=True), inverse


def distinct_coded_rows(
    columns: Iterable[tuple[np.ndarray, int]], rows: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """For rows given as per-column integer codes (each ``(codes, count)`` with
    0 <= codes < count, equal codes exactly for equal values): (the first row of each
    distinct row, in first-seen order; the index of each row's distinct row), or None
    when every row is distinct (always compared in full: no probe)."""
    inverse = _dense_keys(columns, rows)
    if len(inverse) == 0 or inverse.max() == rows - 1:
        return None
    first = np.unique(inverse, return_index=True)[1]
    return first, inverse.astype(np.int64)


def _row_keys(frame: pd.DataFrame) -> np.ndarray:
    """An integer per row, equal exactly when the rows are equal (dense: 0..distinct-1
    in first-seen order)."""
    return _dense_keys(_factorized(frame), len(frame))


def _factorized(frame: pd.DataFrame) -> Iterable[tuple[np.ndarray, int]]:
    """Each column's (codes, number of distinct values), missing values one value."""
    for name in frame.columns:
        codes, uniques = pd.factorize(frame[name], sort=False, use_na_sentinel=False)
        yield codes, len(uniques)


def _dense_keys(columns: Iterable[tuple[np.ndarray, int]], rows: int) -> np.ndarray:
    """Per-column codes combined in mixed radix into one dense key per row."""
    key = np.zeros(rows, dtype=np.int64)
    size = 1  # key < size
    for codes, count in columns:
        if size * count >= KEY_LIMIT:  # renumber the key densely before it overflows
            key, seen = pd.factorize(key, sort=False)
            size = len(seen)
        key = key * count + codes
        size *= count
    return pd.factorize(key, sort=False)[0]
