"""The last known state of each remote version's endpoint, shared by the workers and the
gateway through the model repository (``<models>/.remote-status/<name>/<version>.json``).

A worker records every fingerprint check; the gateway shows the state in
``GET /v1/models/{name}`` and does not serve cached results of a version whose endpoint
was found changed (the request runs as a job, which re-checks and answers 409).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from service.registry.store import ModelVersion

FOLDER = ".remote-status"


class EndpointState(StrEnum):
    ok = "ok"  # answers match the fingerprint
    changed = "changed"  # the model behind the endpoint changed since registration
    unreachable = "unreachable"  # no usable answer (the model may still be the same)
    unknown = "unknown"  # not checked yet


def status_file(version_path: Path) -> Path:
    """Where the status of the version stored at ``version_path`` is kept."""
    models = version_path.parent.parent
    return models / FOLDER / version_path.parent.name / f"{version_path.name}.json"


def record(version_path: Path, state: EndpointState, detail: str | None) -> None:
    """Write the state atomically (the last writer wins; every check writes)."""
    target = status_file(version_path)
    body = {
        "state": state.value,
        "detail": detail,
        "checked_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checked_at_epoch": time.time(),
    }
    with contextlib.suppress(OSError):  # a read-only repository must not fail the job
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=".status-", dir=target.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(body))
        os.replace(staging, target)


def read(version_path: Path) -> dict[str, Any]:
    """The last recorded state (``unknown`` when none was)."""
    try:
        data = orjson.loads(status_file(version_path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {"state": EndpointState.unknown.value, "detail": None, "checked_at": None}
    return {k: data.get(k) for k in ("state", "detail", "checked_at")}


def endpoint_changed(version: ModelVersion) -> bool:
    """A remote version whose endpoint was last found answering differently."""
    if not version.manifest.is_remote:
        return False
    return read(version.path)["state"] == EndpointState.changed.value
