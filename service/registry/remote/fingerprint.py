"""The fingerprint of a remote model: its answers on the version's reference rows,
rounded and hashed, stored in the version folder (``fingerprint.json``) so that the
version id depends on it.

A re-check sends a few of those rows (``check_rows``) and compares the answers with the
stored ones within the rounding; any difference means the model behind the endpoint is
no longer the one registered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from service.registry.remote.spec import FINGERPRINT_FILE

DECIMALS = 6
CHECK_ROWS = 8
SCHEMA = 1


@dataclass(frozen=True)
class Fingerprint:
    outputs: np.ndarray  # (reference rows, output columns), rounded to DECIMALS
    check_rows: tuple[int, ...]  # indices of the reference rows a re-check sends
    decimals: int = DECIMALS

    @classmethod
    def of(cls, outputs: np.ndarray, check_rows: int = CHECK_ROWS) -> Fingerprint:
        """The fingerprint of the answers on every reference row."""
        rows = outputs.shape[0]
        picked = np.unique(np.linspace(0, rows - 1, min(check_rows, rows)).round().astype(int))
        rounded = np.round(outputs.astype(float), DECIMALS) + 0.0  # no negative zeros
        return cls(rounded, tuple(int(i) for i in picked))

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the rounded answers (fixed-point text, row by row)."""
        text = "\n".join(",".join(f"{v:.{self.decimals}f}" for v in row) for row in self.outputs)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def difference(self, answers: np.ndarray) -> str | None:
        """Why the answers on ``check_rows`` do not match, or None when they do."""
        stored = self.outputs[list(self.check_rows)]
        if answers.shape != stored.shape:
            return (
                f"it now answers {answers.shape[1]} output column(s) where it answered "
                f"{stored.shape[1]}"
            )
        gap = np.abs(np.round(answers, self.decimals) - stored)
        tolerance = 1.5 * 10.0**-self.decimals
        differing = int(np.sum(np.any(gap > tolerance, axis=1)))
        if differing == 0:
            return None
        return (
            f"{differing} of {len(self.check_rows)} check rows answer differently "
            f"(largest difference {float(gap.max()):.3g})"
        )

    def to_json(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "schema": SCHEMA,
                    "digest": self.digest,
                    "decimals": self.decimals,
                    "rows": int(self.outputs.shape[0]),
                    "columns": int(self.outputs.shape[1]),
                    "check_rows": list(self.check_rows),
                    "outputs": [
                        [round(float(v), self.decimals) for v in row] for row in self.outputs
                    ],
                },
                option=orjson.OPT_INDENT_2,
            )
            + b"\n"
        )

    @classmethod
    def from_json(cls, data: bytes) -> Fingerprint:
        raw = orjson.loads(data)
        if raw.get("schema") != SCHEMA:
            raise ValueError(f"unknown fingerprint schema {raw.get('schema')!r}")
        fingerprint = cls(
            np.asarray(raw["outputs"], dtype=float).reshape(raw["rows"], raw["columns"]),
            tuple(int(i) for i in raw["check_rows"]),
            int(raw["decimals"]),
        )
        if fingerprint.digest != raw["digest"]:
            raise ValueError("the fingerprint file does not match its digest")
        return fingerprint


def stored_digest(version_path: Path) -> str | None:
    """The fingerprint digest of the version stored at ``version_path`` (None: not remote)."""
    path = version_path / FINGERPRINT_FILE
    if not path.is_file():
        return None
    return Fingerprint.from_json(path.read_bytes()).digest
