"""Each benchmark owns one section of docs/benchmarks.md, between its start and end
markers; writing it leaves the other benchmarks' sections as they are."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, text: str, start: str, end: str) -> Path:
    """Replace the section of ``path`` that ``text`` (which holds both markers) stands
    for, or append it."""
    current = path.read_text() if path.exists() else ""
    if start in current and end in current:
        head, rest = current.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        updated = head + text + (("\n" + tail) if tail else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + text if current else text
    path.write_text(updated)
    return path
