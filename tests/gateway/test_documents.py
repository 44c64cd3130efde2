"""Documents joined from already-encoded rows are the assembled documents, byte for byte."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from service.gateway.documents import assemble, splice, with_job_id


def _rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [
        {"prediction": {"label": rng.choice(["good", "bad"]), "p": rng.random()}, "i": i}
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["explain", "predict", "adverse_action"])
def test_spliced_chunks_equal_the_assembled_document(kind: str) -> None:
    rng = random.Random(7)
    for header in ({}, {"model": "m", "version": "v1", "seed": 3}):
        for _ in range(30):
            rows = _rows(rng, rng.randrange(0, 12))
            cuts = sorted(rng.randrange(len(rows) + 1) for _ in range(rng.randrange(4)))
            bounds = [0, *cuts, len(rows)]
            parts = [orjson.dumps(rows[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
            spliced = splice(kind, orjson.dumps(header), parts)
            assert spliced == assemble(kind, header, rows)
            assert type(spliced) is bytes


def test_a_kind_without_rows_is_not_spliced() -> None:
    assert splice("global", b"{}", [b"[{}]"]) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{}", b'{"job_id":"j-1"}'),
        (b'{"a":1}', b'{"job_id":"j-1","a":1}'),
        (b"[1,2]", b"[1,2]"),
    ],
)
def test_the_job_id_goes_first(body: bytes, expected: bytes) -> None:
    assert with_job_id(body, "j-1") == expected
