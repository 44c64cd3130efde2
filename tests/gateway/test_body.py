"""JSON bodies: strict Unicode, Python's reading of what orjson refuses, bounded nesting."""

from __future__ import annotations

import json
import math

import pytest

from service.gateway.body import loads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        (b'"\\ud83d\\udcb3"', "\U0001f4b3"),  # an escaped surrogate pair is one character
        (b'{"a": "\\u0000"}', {"a": "\x00"}),
        (b'{"a": 1, "a": 2}', {"a": 2}),
    ],
)
def test_json_is_read_as_json(text: bytes, expected: object) -> None:
    assert loads(text) == expected


def test_what_orjson_refuses_python_reads_so_the_field_can_be_named() -> None:
    assert math.isnan(loads(b'{"x": NaN}')["x"])
    assert loads(b'{"x": 1e400}')["x"] == math.inf
    assert loads(b'{"x": 1' + b"0" * 400 + b"}")["x"] == 10**400


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b'{"a": {"b": ["\\udc80"]}}', "the string at a.b.0 is not valid Unicode"),
        (b'{"\\udc80": 1}', "the string at the document is not valid Unicode"),
        (b'["ok", "\\ud800x"]', "the string at 1 is not valid Unicode"),
        (b'{"a": "\xed\xb2\x80"}', "the string at a is not valid Unicode"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "depth"),
        (b'{"a": ', "unexpected end of data"),
        (b"", "empty document"),
    ],
)
def test_refusals_are_json_decode_errors_saying_why(text: bytes, words: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:  # FastAPI answers these with 422
        loads(text)
    assert words in caught.value.msg
