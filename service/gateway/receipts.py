"""Reading and verifying receipts: visible to their tenant (and admins) only; verified by
signature, then by re-deriving the id from the stored request, then by replay."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from redis.exceptions import RedisError

from service.errors import ConflictError, NotFoundError, ServiceError, UnavailableError
from service.gateway import adverse_schemas as aa
from service.gateway.tenancy import DEFAULT_TENANT, Caller
from service.jobs.spec import TaskKind
from service.receipts.keys import KEYRING_FILE, load_public_keys
from service.receipts.record import differences, stored_receipt_key
from service.receipts.signing import PublicKeys, SignatureCheck
from service.receipts.store import ReceiptStore, open_receipts
from service.registry.remote.errors import ModelChangedError
from service.registry.remote.fingerprint import stored_digest

if TYPE_CHECKING:
    from service.gateway.dataplane import DataPlane

# Recourse (and the notice that lists it) comes from a search with a time budget: a search
# cut short depends on the machine's speed, so it is compared apart from the decision.
RECOURSE_PATHS = ("recourse", "evidence.recourse_validity", "notice")
RECOURSE_NOTE = (
    "the recourse search runs under a time budget; a search cut short by it depends on "
    "machine speed and load, so its options can differ on replay while the decision, "
    "reasons and evidence match"
)
T = TypeVar("T")


class Receipts:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        settings = plane.settings
        self.store: ReceiptStore = open_receipts(
            settings.receipts_location, settings.receipt_retention_seconds
        )
        self._keyring = settings.keys_dir / KEYRING_FILE
        self._keyring_seen: float | None = None
        self.public_keys: PublicKeys = self._load_keys()

    async def call(self, operation: Callable[..., T], *args: Any) -> T:
        """A store operation off the event loop; 503 while the store cannot answer."""
        try:
            return await asyncio.to_thread(operation, *args)
        except (RedisError, sqlite3.OperationalError, OSError) as exc:
            raise UnavailableError(
                f"the receipt store is unavailable ({type(exc).__name__}); retry shortly"
            ) from exc

    async def get(self, receipt_id: str, caller: Caller) -> dict[str, Any]:
        """The stored receipt; 404 when unknown or another tenant's."""
        receipt = await self.call(self.store.get, receipt_id)
        if receipt is None or not caller.sees(receipt.get("tenant", DEFAULT_TENANT)):
            raise NotFoundError(f"receipt '{receipt_id}' not found")
        return receipt

    def keys(self) -> dict[str, Any]:
        return self._current_keys().document()

    async def verify(self, receipt_id: str, caller: Caller) -> aa.ReceiptVerification:
        """Signature first, then the id re-derived from the stored request, then a replay
        with the receipt's version and seeds (no cache) compared with the stored response.
        A record that fails either check is not replayed and never matches."""
        receipt = await self.get(receipt_id, caller)
        signature = await asyncio.to_thread(self._check, receipt)
        id_valid = self._id_derives(receipt_id, receipt)
        if not (signature.valid and id_valid):
            problem = signature.reason or (
                "the receipt id does not derive from the stored request, tenant and seeds"
            )
            return aa.ReceiptVerification(
                receipt_id=receipt_id,
                signature_valid=signature.valid,
                key_id=signature.key_id,
                receipt_id_valid=id_valid,
                match=False,
                differences=[],
                recourse_match=False,
                recourse_differences=[],
                problem=f"{problem}; not replayed",
            )
        return await self._replay(receipt_id, receipt, signature)

    async def _replay(
        self, receipt_id: str, receipt: dict[str, Any], signature: SignatureCheck
    ) -> aa.ReceiptVerification:
        version = self.plane.store.get(receipt["model"], receipt["version"])
        if version.content_hash != receipt["content_hash"]:
            raise ConflictError(f"model version {receipt['version']} no longer has its content")
        replayed_with = {
            "model": version.name,
            "version": version.version_id,
            "content_hash": version.content_hash,
            "seed": receipt["seed"],
            "row_seed": receipt["row_seed"],
        }
        try:
            outcome = await self._recompute(version, receipt, receipt_id)
        except ServiceError as exc:
            if exc.code != ModelChangedError.code:
                raise
            # a remote model whose endpoint no longer answers as when the decision was made
            return aa.ReceiptVerification(
                receipt_id=receipt_id,
                signature_valid=True,
                key_id=signature.key_id,
                receipt_id_valid=True,
                match=False,
                model_changed=True,
                model_changed_detail=exc.message,
                differences=[],
                recourse_match=False,
                recourse_differences=[],
                replayed_with={**replayed_with, "fingerprint": receipt.get("fingerprint")},
            )
        replayed = orjson.loads(orjson.dumps(outcome["results"][0]))
        found = differences(receipt["response"], replayed)
        decisive = [d for d in found if not d["path"].startswith(RECOURSE_PATHS)]
        recourse = [d for d in found if d["path"].startswith(RECOURSE_PATHS)]
        # the replay ran only after the endpoint matched the version's fingerprint
        fingerprint = await asyncio.to_thread(stored_digest, version.path)
        return aa.ReceiptVerification(
            receipt_id=receipt_id,
            signature_valid=True,
            key_id=signature.key_id,
            receipt_id_valid=True,
            match=not decisive,
            model_changed=fingerprint != receipt.get("fingerprint"),
            differences=[aa.Difference(**d) for d in decisive],
            recourse_match=not recourse,
            recourse_differences=[aa.Difference(**d) for d in recourse],
            recourse_note=RECOURSE_NOTE if recourse else None,
            replayed_with={
                **replayed_with,
                **({"fingerprint": fingerprint} if fingerprint is not None else {}),
            },
        )

    async def _recompute(
        self, version: Any, receipt: dict[str, Any], receipt_id: str
    ) -> dict[str, Any]:
        """The receipt's decision recomputed by a worker (no cache, no receipt written)."""
        request = receipt["request"]
        return await self.plane.jobs.call(
            {
                "kind": TaskKind.adverse_action,
                "models_dir": str(self.plane.settings.models_dir),
                "model": version.name,
                "version": version.version_id,
                "instances": [request["applicant"]],
                "options": {"adverse_action": request["options"]},
                "seed": receipt["seed"],
                "offset": receipt["index"],
                "job_id": receipt["job_id"],
                "application_ids": [request.get("application_id")],
                "receipt_ids": [receipt_id],
            }
        )

    def _check(self, receipt: dict[str, Any]) -> SignatureCheck:
        return self._current_keys().check(receipt)

    def _current_keys(self) -> PublicKeys:
        """The public keys, reloaded when the keyring file changed (a key rotated in by
        restarted workers)."""
        if self._keyring_mtime() != self._keyring_seen:
            self.public_keys = self._load_keys()
        return self.public_keys

    def _load_keys(self) -> PublicKeys:
        keys = load_public_keys(self.plane.settings)
        self._keyring_seen = self._keyring_mtime()
        return keys

    def _keyring_mtime(self) -> float | None:
        try:
            return self._keyring.stat().st_mtime
        except OSError:
            return None

    def _id_derives(self, receipt_id: str, receipt: dict[str, Any]) -> bool:
        if receipt.get("receipt_id") != receipt_id:
            return False
        try:
            key = stored_receipt_key(receipt)
        except (KeyError, TypeError):
            return False
        tenant = receipt.get("tenant")
        return isinstance(tenant, str) and self.plane.handles.receipt_id(tenant, key) == receipt_id
