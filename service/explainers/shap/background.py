"""The background rows an attribution is measured against, and how they were chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

BACKGROUND_SEED = 0


@dataclass(frozen=True)
class Background:
    rows: pd.DataFrame
    selection: str  # e.g. "all 200 reference rows", "random sample of 50 of 182 ... (seed 0)"

    def summary(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "selection": self.selection}


def background(reference: pd.DataFrame, rows: int | None, what: str) -> Background:
    """All of ``reference`` when ``rows`` is None or not smaller, else a seeded sample.
    ``what`` names the rows in the selection text ("reference rows", "baseline rows")."""
    total = len(reference)
    if rows is None or rows >= total:
        return Background(reference.reset_index(drop=True), f"all {total} {what}")
    sample = reference.sample(rows, random_state=BACKGROUND_SEED).reset_index(drop=True)
    return Background(
        sample, f"random sample of {rows} of the {total} {what} (seed {BACKGROUND_SEED})"
    )
