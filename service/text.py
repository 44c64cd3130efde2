"""Text that cannot be encoded: find it in parsed documents, and make messages safe.

Python's JSON and YAML parsers turn an escaped lone surrogate (``"\\udc80"``) into a
``str`` that no UTF-8 encoder accepts; such text must be refused where it enters, and an
error message quoting it must still be sendable.
"""

from __future__ import annotations

from typing import Any

Location = tuple[str | int, ...]


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable_path(document: Any) -> Location | None:
    """Location of the first string (value or key) in a parsed JSON/YAML document that
    cannot be encoded as UTF-8, or None. Iterative: depth costs no stack."""
    pending: list[tuple[Location, Any]] = [((), document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not encodable(key):
                    return path
                pending.append(((*path, key if isinstance(key, (str, int)) else str(key)), item))
        elif isinstance(value, (list, tuple)):
            pending.extend(((*path, i), item) for i, item in enumerate(value))
    return None


def printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot carry escaped (``\\udc80``), for messages."""
    if encodable(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dotted(path: Location) -> str:
    return ".".join(printable(str(p)) for p in path) or "the document"
