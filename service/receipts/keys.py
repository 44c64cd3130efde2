"""Where the receipt signing key and the public keyring live.

The private key is ``XAI_RECEIPT_SIGNING_KEY`` (PEM) or the file
``<keys_dir>/receipt-signing-key.pem``, generated on first start (mode 0600). Every
process that loads a signing key adds its public key to ``<keys_dir>/receipt-public-keys.json``;
keys are never removed from it, so receipts signed before a rotation keep verifying.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from service.keyfiles import PRIVATE_DIR, load_or_create, write_new
from service.receipts.signing import ALGORITHM, PublicKeys, ReceiptSigner, generate_pem
from service.settings import Settings

SIGNING_KEY_FILE = "receipt-signing-key.pem"
KEYRING_FILE = "receipt-public-keys.json"

log = logging.getLogger(__name__)


def signing_key_pem(settings: Settings) -> bytes:
    """The private key, created on first start when no key is configured."""
    if settings.receipt_signing_key is not None:
        return settings.receipt_signing_key.get_secret_value().encode()
    return load_or_create(settings.keys_dir / SIGNING_KEY_FILE, generate_pem)


def load_signer(settings: Settings, pem: bytes | None = None) -> ReceiptSigner:
    """The signer of this deployment; its public key is published to the keyring."""
    signer = ReceiptSigner.from_pem(pem if pem is not None else signing_key_pem(settings))
    try:
        publish(settings.keys_dir, signer)
    except OSError as exc:  # e.g. a read-only keys folder on a worker host
        log.warning("receipt key %s not added to the keyring: %s", signer.key_id, exc.strerror)
    return signer


def load_public_keys(settings: Settings) -> PublicKeys:
    """The current key (from the signing key) and every key of the keyring."""
    signer = load_signer(settings)
    keys = read_keyring(settings.keys_dir)
    keys[signer.key_id] = signer.public_key
    return PublicKeys(keys, signer.key_id)


def rotate(settings: Settings) -> tuple[str, str]:
    """Replace the signing key file with a new key; (old, new) key ids. Processes pick up
    the new key when they restart; the old public key stays in the keyring."""
    if settings.receipt_signing_key is not None:
        raise ValueError(
            "the signing key comes from XAI_RECEIPT_SIGNING_KEY: rotate it there (the "
            "public key of the old one stays in the keyring)"
        )
    old = load_signer(settings)
    pem = generate_pem()
    new = ReceiptSigner.from_pem(pem)
    publish(settings.keys_dir, new)  # published before anyone can sign with it
    write_new(settings.keys_dir / SIGNING_KEY_FILE, pem, replace=True)
    return old.key_id, new.key_id


def read_keyring(folder: Path) -> dict[str, bytes]:
    try:
        document = orjson.loads((folder / KEYRING_FILE).read_bytes())
    except FileNotFoundError:
        return {}
    return {k["key_id"]: base64.b64decode(k["public_key"]) for k in document["keys"]}


def publish(folder: Path, signer: ReceiptSigner) -> None:
    """Add the signer's public key to the keyring (once)."""
    with _locked(folder):
        path = folder / KEYRING_FILE
        try:
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            document = {"keys": []}
        if any(k["key_id"] == signer.key_id for k in document["keys"]):
            return
        document["keys"].append(
            {
                "key_id": signer.key_id,
                "algorithm": ALGORITHM,
                "public_key": base64.b64encode(signer.public_key).decode(),
                "added_at": time.time(),
            }
        )
        write_new(path, orjson.dumps(document, option=orjson.OPT_INDENT_2), replace=True)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    with open(folder / f".{KEYRING_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
