"""Open a remote version's predictor from its folder (or a candidate's, unfingerprinted)."""

from __future__ import annotations

from pathlib import Path

from service.registry.manifest import Manifest
from service.registry.remote.fingerprint import Fingerprint
from service.registry.remote.predictor import RemotePredictor

REGISTRATION_RETRY_SECONDS = 5.0  # an unreachable endpoint is refused quickly


def open_remote(manifest: Manifest, fingerprint_path: Path) -> RemotePredictor:
    """The predictor of the version whose fingerprint file is ``fingerprint_path``; a
    candidate without one yet is being registered (no check, short retries)."""
    from service.registry.loaded import read_rows

    folder = fingerprint_path.parent
    if not fingerprint_path.is_file():
        return RemotePredictor(manifest, retry_seconds=REGISTRATION_RETRY_SECONDS)
    fingerprint = Fingerprint.from_json(fingerprint_path.read_bytes())
    reference = read_rows(folder / manifest.reference_data.path, manifest)
    if len(reference) != fingerprint.outputs.shape[0]:
        raise ValueError(
            f"the fingerprint covers {fingerprint.outputs.shape[0]} reference rows, "
            f"the reference data has {len(reference)}"
        )
    check = reference.iloc[list(fingerprint.check_rows)]
    return RemotePredictor(manifest, fingerprint, check, folder)
