"""Receipt signatures: Ed25519 over a canonical byte encoding of the record.

What is signed (``signed_bytes``): the ASCII line ``xai-receipt/v1`` and a newline,
then the receipt without its ``signature`` member as canonical JSON: UTF-8, no
whitespace, object members sorted by key (code point order) at every level, strings as
JSON with non-ASCII characters unescaped, integers as integers and floats in their
shortest round-trip form as ``orjson`` writes them (``0.1``, ``53.0``, ``1e-7``,
``1e+16``).
Parsing a stored or exported receipt and encoding it again gives the same bytes, so a
receipt verifies however its JSON was pretty-printed in between.

A key id names the public key (``ed25519-`` and 16 hex digits of its sha256), so keys can
rotate: receipts name the key that signed them and old public keys keep verifying.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.jobs.keys import canonical_json

ALGORITHM = "Ed25519"
DOMAIN = b"xai-receipt/v1\n"
SIGNATURE = "signature"
ENCODING = (
    "the bytes 'xai-receipt/v1\\n' followed by the receipt without its 'signature' member "
    "as canonical JSON (UTF-8, no whitespace, keys sorted at every level, shortest "
    "round-trip floats)"
)


def signed_bytes(receipt: dict[str, Any]) -> bytes:
    """The exact bytes a receipt's signature covers."""
    return DOMAIN + canonical_json({k: v for k, v in receipt.items() if k != SIGNATURE})


def key_id(public_key: bytes) -> str:
    return "ed25519-" + hashlib.sha256(public_key).hexdigest()[:16]


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class ReceiptSigner:
    """Signs receipts with one private key (held by the processes that write receipts)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = raw_public(private_key.public_key())
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes) -> ReceiptSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the receipt signing key must be an Ed25519 private key")
        return cls(key)

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """The receipt with its ``signature`` member (algorithm, key id, base64 value)."""
        value = self._key.sign(signed_bytes(receipt))
        return {
            **receipt,
            SIGNATURE: {
                "algorithm": ALGORITHM,
                "key_id": self.key_id,
                "value": base64.b64encode(value).decode(),
            },
        }


def generate_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class SignatureCheck:
    valid: bool
    key_id: str | None
    reason: str | None = None


class PublicKeys:
    """The public keys receipts are verified with, by key id."""

    def __init__(self, keys: dict[str, bytes], current: str | None = None) -> None:
        for kid, raw in keys.items():
            if key_id(raw) != kid:
                raise ValueError(f"key id {kid} does not name its public key")
        self.keys, self.current = dict(keys), current

    def check(self, receipt: dict[str, Any]) -> SignatureCheck:
        """Whether ``receipt`` is exactly what a known key signed."""
        signature = receipt.get(SIGNATURE)
        if not isinstance(signature, dict):
            return SignatureCheck(False, None, "the receipt is not signed")
        kid = signature.get("key_id")
        kid = kid if isinstance(kid, str) else None
        if signature.get("algorithm") != ALGORITHM:
            return SignatureCheck(False, kid, f"the signature is not {ALGORITHM}")
        raw = self.keys.get(kid or "")
        if raw is None:
            return SignatureCheck(False, kid, f"no known public key has the id {kid!r}")
        try:
            value = base64.b64decode(str(signature.get("value", "")), validate=True)
            Ed25519PublicKey.from_public_bytes(raw).verify(value, signed_bytes(receipt))
        except (InvalidSignature, binascii.Error, ValueError):
            return SignatureCheck(
                False, kid, "the signature does not match the record: it was altered"
            )
        return SignatureCheck(True, kid)

    def document(self) -> dict[str, Any]:
        """What ``GET /v1/receipts/keys`` publishes (and offline verification reads)."""
        return {
            "algorithm": ALGORITHM,
            "signed_bytes": ENCODING,
            "keys": [
                {
                    "key_id": kid,
                    "algorithm": ALGORITHM,
                    "public_key": base64.b64encode(raw).decode(),
                    "current": kid == self.current,
                }
                for kid, raw in sorted(self.keys.items())
            ],
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> PublicKeys:
        """Keys from a published document; each key id must name its key."""
        keys = {k["key_id"]: base64.b64decode(k["public_key"]) for k in document["keys"]}
        current = next((k["key_id"] for k in document["keys"] if k.get("current")), None)
        return cls(keys, current)
