"""What a predictor computed for the last small frame it saw, keyed by the frame's
contents: predictions, SHAP and the additivity check look at the same rows, so they are
transformed and scored once. A frame changed in place has another key, so it is computed
again; a large frame is never memoised."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import pandas as pd

MEMO_MAX_ROWS = 1000
T = TypeVar("T")


def frame_key(frame: pd.DataFrame) -> Hashable | None:
    """Equal exactly when two frames have the same columns, dtypes and values (a missing
    value never equals another, so a frame holding one is computed again); None for a
    large frame."""
    if len(frame) > MEMO_MAX_ROWS:
        return None
    return tuple(frame.columns), tuple((a.dtype, tuple(a.tolist())) for a in column_arrays(frame))


def column_arrays(frame: pd.DataFrame) -> Iterator[Any]:
    """Each column's array (numpy or pandas extension array), in order."""
    # pandas' own column iterator skips building a Series per column (5x faster here)
    columns = getattr(frame, "_iter_column_arrays", None)
    if columns is not None:
        return iter(columns())
    return (series.array for _, series in frame.items())


class FrameMemo:
    """Values computed from the last frame seen, by name (safe to share between threads:
    a value is only ever kept under the key of the frame it was computed from)."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, frame: pd.DataFrame, name: str, compute: Callable[[], T]) -> T:
        key = frame_key(frame)
        if key is None:
            return compute()
        with self._lock:
            if key != self._key:
                self._key, self._values = key, {}
            if name in self._values:
                return self._values[name]  # type: ignore[no-any-return]
        value = compute()  # may memoise other values of the same frame; if it raises, none
        with self._lock:
            if key == self._key:
                self._values[name] = value
        return value
