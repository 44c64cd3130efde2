"""The ids handed to clients: job and receipt ids nobody else can compute.

An id is HMAC-SHA256 under the server secret of (purpose, tenant, content key): the same
tenant's same request always gets the same id (and the same bytes), another tenant gets
another id for the same work, and without the secret an id cannot be derived from a
request, however well it is guessed. Only gateways hold the secret; all gateways of one
deployment must hold the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from service.keyfiles import load_or_create
from service.receipts.record import RECEIPT_PREFIX
from service.settings import Settings

SECRET_FILE = "server-secret"
MIN_SECRET_BYTES = 32
RECEIPT_ID_HEX = 32


class Handles:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the server secret must have at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def job_id(self, tenant: str, key: str) -> str:
        """The id of ``tenant``'s job computing the work named by content key ``key``."""
        return self._mac("job", tenant, key)

    def receipt_id(self, tenant: str, receipt_key: str) -> str:
        """The id of ``tenant``'s receipt whose content key is ``receipt_key``."""
        return RECEIPT_PREFIX + self._mac("receipt", tenant, receipt_key)[:RECEIPT_ID_HEX]

    def _mac(self, purpose: str, tenant: str, key: str) -> str:
        # NUL cannot occur in a purpose, a tenant name or a hex key: the parts never blur.
        message = "\0".join((purpose, tenant, key)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def server_secret(settings: Settings) -> bytes:
    """``XAI_SERVER_SECRET``, else the file in the keys folder (generated on first start)."""
    if settings.server_secret is not None:
        return settings.server_secret.get_secret_value().encode()
    path = settings.keys_dir / SECRET_FILE
    return load_or_create(path, lambda: secrets.token_hex(32).encode() + b"\n").strip()
