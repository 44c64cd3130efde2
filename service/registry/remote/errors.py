"""What a remote model's failures look like to callers (both carry a stable ``code``)."""

from __future__ import annotations

from service.errors import ConflictError, UnavailableError


class RemoteUnavailableError(UnavailableError):
    """The endpoint did not answer usefully within the retries allowed (503)."""

    code = "remote_unavailable"


class ModelChangedError(ConflictError):
    """The endpoint's answers no longer match the version's fingerprint (409)."""

    code = "model_changed"
