"""Text that cannot be encoded is found and escaped; server paths are cut from messages."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from service.redaction import redact_paths
from service.text import dotted, encodable, printable, unencodable_path


def test_unencodable_text_is_found_anywhere_in_a_document() -> None:
    assert unencodable_path({"a": [1, "ok", {"b": "x\udc80"}]}) == ("a", 2, "b")
    assert unencodable_path({"k\udc80": 1}) == ()
    assert unencodable_path([[[[["\ud800"]]]]]) == (0, 0, 0, 0, 0)
    assert unencodable_path({"a": "\U0001f4b3", "b": "\x00"}) is None
    deep: list = []
    cursor = deep
    for _ in range(10_000):  # iterative: no recursion limit
        cursor.append([])
        cursor = cursor[0]
    cursor.append("\udc80")
    assert unencodable_path(deep) is not None


def test_printable_escapes_only_what_utf8_cannot_carry() -> None:
    assert printable("plain é 💳") == "plain é 💳"
    assert printable("a\udc80b") == "a\\udc80b"
    assert encodable(printable("\ud800\udfff"))
    assert dotted(("instances", 0, "x\udc80")) == "instances.0.x\\udc80"


def test_paths_under_server_folders_keep_only_their_file_name() -> None:
    staging = "models/.incoming/" + "0123456789abcdef" * 2 + "/model.json"
    assert redact_paths(f"Invalid model format in: `{staging}`.") == (
        "Invalid model format in: `model.json`."
    )
    here = os.getcwd()
    assert redact_paths(f"open {here}/models/x/1/reference.csv failed") == (
        "open reference.csv failed"
    )
    assert redact_paths(f"{sys.prefix}/lib/python3.11/site-packages/xgboost/core.py:1") == (
        "core.py:1"
    )
    temp = Path(tempfile.gettempdir()) / "pytest-1" / "m.txt"
    assert redact_paths(f"no file {temp}") == "no file m.txt"
    assert redact_paths("see /srv/models/a/b/c.csv", ["/srv/models"]) == "see c.csv"
    assert redact_paths("'models/german-credit/abc/model.skops'", ["models"]) == ("'model.skops'")


def test_text_that_only_looks_like_a_path_is_kept() -> None:
    for text in (
        "'radio/television' is not an allowed category",
        "two models/ differ",
        "purpose: car (new) / furniture",
        "a/b/c",
    ):
        assert redact_paths(text, ["models"]) == text
