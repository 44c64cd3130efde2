"""Keep server paths out of what callers are told.

Library errors quote file names with the folder they live in (a staging folder
``models/.incoming/<uuid>/``, the model repository, the virtualenv). A message leaving the
service keeps only the file's own name.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

STAGING = re.compile(r"[^\s'\"`(\[]*\.incoming/[0-9a-f]{32}/")
_TAIL = r"(?:/[^\s'\"`:,;()\[\]<>]+)+"


def redact_paths(text: str, roots: Iterable[str | os.PathLike[str]] = ()) -> str:
    """``text`` with every path under a server folder (``roots``, the working directory,
    the interpreter's prefix, the temporary folder, the home folder) cut to its last part."""
    text = STAGING.sub("", text)
    return _pattern(tuple(str(r) for r in roots)).sub(_last_part, text)


def _last_part(match: re.Match[str]) -> str:
    return match.group().rstrip("/").rsplit("/", 1)[-1]


@lru_cache(maxsize=16)
def _pattern(roots: tuple[str, ...]) -> re.Pattern[str]:
    absolute = {
        str(Path(p).resolve())
        for p in (*roots, os.getcwd(), sys.prefix, sys.base_prefix, tempfile.gettempdir())
    }
    absolute.add(str(Path.home()))
    absolute.discard("/")
    alternatives = [re.escape(p) + _TAIL for p in sorted(absolute, key=len, reverse=True)]
    # a relative repository folder ("models") as the workers name its files: two parts at least
    relative = {r.strip("/") for r in roots if not os.path.isabs(r) and r.strip("/.")}
    alternatives += [re.escape(r) + r"(?:/[^\s'\"`:,;()\[\]<>/]+){2,}" for r in relative]
    return re.compile(r"(?<![\w.-])(?:" + "|".join(alternatives) + ")")
