"""Secret files: created once (mode 0600, atomically, so concurrent first starts agree on
one), read ever after. Their contents are never logged."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def load_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The contents of ``path``; on first use ``generate()`` is written there first. When
    several processes start at once, the first file to land wins and all read it."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    write_new(path, generate(), replace=False)
    return _read(path)


def write_new(path: Path, data: bytes, replace: bool) -> None:
    """Write a private file atomically; without ``replace`` an existing file is kept."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(staging, path)
            return
        try:
            os.link(staging, path)  # atomic; fails when another process got there first
        except FileExistsError:
            pass
    finally:
        staging.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s is readable by other users (mode %o); it holds a secret: chmod 600 it",
            path.name,
            mode,
        )
    return data
