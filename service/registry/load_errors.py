"""Why an artifact did not load, in words for the one who uploaded it.

Loaders answer a wrong or damaged file with their own diagnostics: XGBoost's C++ check
with a native stack trace, LightGBM's "[Fatal]" line, each quoting the server path of
the staging file. The caller is told instead what format was expected and what the file
looks like (from its first bytes), plus the loader's first line without paths.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.redaction import redact_paths
from service.registry.manifest import ArtifactFormat

EXPECTED = {
    ArtifactFormat.skops: "a skops archive",
    ArtifactFormat.xgboost_json: "an XGBoost JSON model",
    ArtifactFormat.xgboost_ubj: "an XGBoost UBJSON model",
    ArtifactFormat.lightgbm_text: "a LightGBM text model",
    ArtifactFormat.joblib: "a joblib/pickle file",
}
HEAD_BYTES = 4096
MAX_DETAIL = 300
_XGBOOST_PREFIX = re.compile(r"^\[[\d:]+\] [^\s:]+:\d+: ")


def load_failure(fmt: ArtifactFormat, path: Path, error: BaseException) -> str:
    """``artifact could not be loaded as <fmt>: ...`` with what the file looks like."""
    looks_like, as_format = sniff(path)
    expected = EXPECTED.get(fmt, f"a {fmt} artifact")
    prefix = f"artifact could not be loaded as {fmt}"
    if as_format is not fmt:
        return f"{prefix}: not {expected} (the file looks like {looks_like})"
    return f"{prefix}: the file looks like {looks_like} but cannot be read: {detail(error)}"


def sniff(path: Path) -> tuple[str, ArtifactFormat | None]:
    """What a file's first bytes look like, and the artifact format that would be."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return "a file that cannot be read", None
    if not head:
        return "an empty file", None
    if head.startswith(b"PK\x03\x04"):
        return "a skops/zip archive", ArtifactFormat.skops
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (joblib) file", ArtifactFormat.joblib
    if head[:1] == b"{" and head[1:2] in b"iUIlLdD#$" and b"learner" in head:
        return "an XGBoost UBJSON model", ArtifactFormat.xgboost_ubj
    text = head.decode("utf-8", "ignore").lstrip()
    if text.startswith("{"):
        if '"learner"' in text:
            return "an XGBoost JSON model", ArtifactFormat.xgboost_json
        return "JSON that is not an XGBoost model", None
    if text.startswith("tree\n") or text.startswith("tree\r\n"):
        return "a LightGBM text model", ArtifactFormat.lightgbm_text
    if head.count(b"\0") == 0 and len(text) >= 0.9 * len(head):
        return "text", None
    return "binary data", None


def detail(error: BaseException) -> str:
    """The loader's own message: its first line, no source location, no paths."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = _XGBOOST_PREFIX.sub("", lines[0]) if lines else type(error).__name__
    first = redact_paths(first)
    return first if len(first) <= MAX_DETAIL else first[: MAX_DETAIL - 3] + "..."
