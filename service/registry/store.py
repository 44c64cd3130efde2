"""The model repository on disk: ``models/<name>/<version_id>/`` with manifest and files.

A version id is the first 16 hex digits of the sha256 over the manifest and the files it
names. Folders whose content no longer matches their id are refused, so a registered
version is immutable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.errors import ConflictError, NotFoundError
from service.registry.manifest import Manifest, parse_manifest

MANIFEST_FILE = "manifest.yaml"
REGISTRATION_FILE = "registration.json"
VERSION_ID_LENGTH = 16
VERSION_ID = re.compile(r"[0-9a-f]{1,16}")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersion:
    """A registered, immutable model version."""

    name: str
    version_id: str
    content_hash: str
    manifest_hash: str
    path: Path
    manifest: Manifest
    registered_at: str
    source: str

    def file(self, name: str) -> Path:
        return self.path / name


def content_hash(manifest_bytes: bytes, files: dict[str, bytes]) -> str:
    """sha256 over the manifest and each named file (name, length and bytes)."""
    digest = hashlib.sha256()
    for name, data in [(MANIFEST_FILE, manifest_bytes), *sorted(files.items())]:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


class ModelStore:
    """Reads and writes the model repository. Thread-safe.

    Other processes (``xai-service register``, another gateway) may add versions at any
    time: :meth:`refresh` picks them up from a directory listing, reading only new folders;
    a model or version not known yet triggers it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._versions: dict[str, dict[str, ModelVersion]] = {}
        self._refused: dict[Path, float] = {}  # folders that failed, by modification time
        self.problems: dict[str, str] = {}

    def scan(self) -> None:
        """(Re)read every version folder; folders that fail verification are skipped."""
        with self._refreshing:
            found: dict[str, dict[str, ModelVersion]] = {}
            refused: dict[Path, float] = {}
            problems: dict[str, str] = {}
            for folder in self._listing():
                version = self._try_read(folder, refused, problems)
                if version is not None:
                    found.setdefault(version.name, {})[version.version_id] = version
            with self._lock:
                self._versions, self._refused, self.problems = found, refused, problems

    def refresh(self) -> bool:
        """Take in version folders added (or removed) since the last look; True if any.

        Costs a directory listing; new folders are read and verified, refused ones are
        read again only when they change.
        """
        with self._refreshing:
            listed = set(self._listing())
            with self._lock:
                known = {v.path: v for by_id in self._versions.values() for v in by_id.values()}
                refused, problems = dict(self._refused), dict(self.problems)
            gone = [path for path in known if path not in listed]
            new = [
                folder
                for folder in sorted(listed - set(known))
                if refused.get(folder) != _modified(folder)
            ]
            vanished = set(refused) - listed
            if not gone and not new and not vanished:
                return False
            for folder in vanished:
                refused.pop(folder)
                problems.pop(str(folder), None)
            read = [v for f in new if (v := self._try_read(f, refused, problems)) is not None]
            with self._lock:
                for path in gone:
                    version = known[path]
                    by_id = self._versions.get(version.name, {})
                    by_id.pop(version.version_id, None)
                    if not by_id:
                        self._versions.pop(version.name, None)
                for version in read:
                    self._versions.setdefault(version.name, {})[version.version_id] = version
                self._refused, self.problems = refused, problems
            if read:
                log.info("model versions added: %s", [f"{v.name}/{v.version_id}" for v in read])
            return bool(read or gone)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._versions)

    def versions(self, name: str) -> list[ModelVersion]:
        """Versions of a model, oldest first."""
        with self._lock:
            by_id = self._versions.get(name)
        if not by_id and self.refresh():  # registered by another process since?
            with self._lock:
                by_id = self._versions.get(name)
        if not by_id:
            raise NotFoundError(f"model '{name}' not found")
        return sorted(by_id.values(), key=lambda v: (v.registered_at, v.version_id))

    def get(self, name: str, version_id: str | None = None) -> ModelVersion:
        """A version by id (or unique id prefix); the latest when ``version_id`` is None."""
        if version_id is None:
            return self.versions(name)[-1]
        if not VERSION_ID.fullmatch(version_id):
            self.versions(name)  # 404 for the model itself when it is unknown
            raise NotFoundError(f"version '{version_id}' of model '{name}' not found")
        found = self._match(name, version_id)
        if found is None:
            # Another process may have registered it since the last look.
            self._read_if_new(name, version_id)
            found = self._match(name, version_id)
        if found is None and self.refresh():  # e.g. a prefix of a version id
            found = self._match(name, version_id)
        if found is None:
            self.versions(name)  # 404 for the model itself when it is unknown
            raise NotFoundError(f"version '{version_id}' of model '{name}' not found")
        return found

    def delete(self, version: ModelVersion) -> None:
        """Remove a version's folder and forget it (its model too, if it was the last)."""
        shutil.rmtree(version.path)
        with self._lock:
            by_id = self._versions.get(version.name, {})
            by_id.pop(version.version_id, None)
            if not by_id:
                self._versions.pop(version.name, None)
                with contextlib.suppress(OSError):
                    version.path.parent.rmdir()

    def _match(self, name: str, version_id: str) -> ModelVersion | None:
        with self._lock:
            by_id = self._versions.get(name, {})
            matches = [
                v for v in by_id.values() if version_id and v.version_id.startswith(version_id)
            ]
        return matches[0] if len(matches) == 1 else None

    def _read_if_new(self, name: str, version_id: str) -> None:
        if len(version_id) != VERSION_ID_LENGTH or not VERSION_ID.fullmatch(version_id):
            return  # only a full id names a folder; never a path
        folder = self.root / name / version_id
        if not _is_version_folder(folder):
            return
        try:
            version = self._read_version(folder)
        except Exception as exc:  # noqa: BLE001 - recorded, reported as not found
            self.problems[str(folder)] = str(exc)
            return
        with self._lock:
            self._versions.setdefault(name, {})[version.version_id] = version

    def register(
        self, manifest_bytes: bytes, files: dict[str, bytes], source: str
    ) -> tuple[ModelVersion, bool]:
        """Write a new version atomically. Returns (version, created); idempotent by content."""
        manifest = parse_manifest(manifest_bytes)
        expected = set(manifest.data_files())
        if set(files) != expected:
            missing, extra = sorted(expected - set(files)), sorted(set(files) - expected)
            raise ConflictError(
                f"files do not match the manifest: missing {missing}, extra {extra}"
            )
        digest = content_hash(manifest_bytes, files)
        version_id = digest[:VERSION_ID_LENGTH]
        target = self.root / manifest.name / version_id
        if target.is_dir():
            self.refresh()
            return self.get(manifest.name, version_id), False
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        created = True
        try:
            (staging / MANIFEST_FILE).write_bytes(manifest_bytes)
            for name, data in files.items():
                (staging / name).write_bytes(data)
            registration = {"registered_at": _now(), "source": source, "content_hash": digest}
            (staging / REGISTRATION_FILE).write_text(json.dumps(registration, indent=2) + "\n")
            try:
                os.replace(staging, target)
            except OSError:
                if not (target / MANIFEST_FILE).is_file():
                    raise
                created = False  # the same content was registered concurrently
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.refresh()
        return self.get(manifest.name, version_id), created

    def _listing(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*/*") if _is_version_folder(p))

    def _try_read(
        self, folder: Path, refused: dict[Path, float], problems: dict[str, str]
    ) -> ModelVersion | None:
        """The version in ``folder``, or None with the problem recorded (and logged)."""
        try:
            version = self._read_version(folder)
        except Exception as exc:  # noqa: BLE001 - one bad folder must not hide the rest
            refused[folder] = _modified(folder)
            problems[str(folder)] = str(exc)
            log.error("skipping model folder %s: %s", folder, exc)
            return None
        refused.pop(folder, None)
        problems.pop(str(folder), None)
        return version

    def _read_version(self, folder: Path) -> ModelVersion:
        manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
        manifest = parse_manifest(manifest_bytes)
        files = {name: (folder / name).read_bytes() for name in manifest.data_files()}
        digest = content_hash(manifest_bytes, files)
        if folder.name != digest[:VERSION_ID_LENGTH]:
            raise ValueError(
                f"content hash {digest[:VERSION_ID_LENGTH]} does not match folder name: "
                "a registered version was modified"
            )
        if folder.parent.name != manifest.name:
            raise ValueError(f"manifest name '{manifest.name}' does not match folder")
        registration = _read_registration(folder / REGISTRATION_FILE)
        return ModelVersion(
            name=manifest.name,
            version_id=folder.name,
            content_hash=digest,
            manifest_hash=hashlib.sha256(manifest_bytes).hexdigest(),
            path=folder,
            manifest=manifest,
            registered_at=registration.get("registered_at", "1970-01-01T00:00:00Z"),
            source=registration.get("source", "local"),
        )


def _read_registration(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _modified(folder: Path) -> float:
    """The latest modification time of a folder and its files (-1 when it is gone)."""
    try:
        return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
    except OSError:
        return -1.0


def _is_version_folder(path: Path) -> bool:
    """Version folders, not staging areas (dot-names) or stray files."""
    return path.is_dir() and not path.name.startswith(".") and not path.parent.name.startswith(".")
