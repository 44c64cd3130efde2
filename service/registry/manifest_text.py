"""Reading a manifest's YAML (or JSON) text within bounds.

A manifest comes from an upload, so its text is bounded before it is built into objects:
size (``MAX_MANIFEST_BYTES``), nesting (``MAX_DEPTH``; Python's YAML composer recurses)
and the number of nodes once aliases are expanded (``MAX_NODES``; a few anchors can stand
for billions of nodes). The bounds are measured on the parser's event stream, which
needs no recursion and builds nothing. Strings must be valid Unicode.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

from service.errors import invalid
from service.text import unencodable_path

MAX_MANIFEST_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 200_000
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed


class _OutOfBounds(Exception):
    pass


def load_document(text: str | bytes, loc: tuple[str | int, ...]) -> Any:
    """The parsed document; 422 at ``loc`` when the text is too large, too deep, not
    YAML, or holds text that is not valid Unicode."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MANIFEST_BYTES:
        raise invalid(
            loc, f"is {size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}", "too_long"
        )
    try:
        _check_bounds(text)
        document = yaml.load(text, Loader=Loader)  # noqa: S506 - a safe loader
    except _OutOfBounds as exc:
        raise invalid(loc, str(exc), "too_long") from None
    except yaml.YAMLError as exc:
        raise invalid(loc, f"not valid YAML/JSON: {exc}") from None
    where = unencodable_path(document)
    if where is not None:
        raise invalid((*loc, *where), "is not valid Unicode (a lone surrogate)", "string_unicode")
    return document


def _check_bounds(text: str | bytes) -> None:
    expanded = 0  # nodes so far, aliases counted as the nodes they stand for
    open_collections: list[tuple[int, str | None]] = []
    sizes: dict[str, int] = {}
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, CollectionStartEvent):
            open_collections.append((expanded, event.anchor))
            expanded += 1
            if len(open_collections) > MAX_DEPTH:
                raise _OutOfBounds(f"is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            start, anchor = open_collections.pop()
            if anchor is not None:
                sizes[anchor] = expanded - start
        elif isinstance(event, ScalarEvent):
            expanded += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            expanded += sizes.get(event.anchor or "", 1)
        if expanded > MAX_NODES:
            raise _OutOfBounds(f"has more than {MAX_NODES} values once its aliases are expanded")
