"""Forged receipts, written straight into the store (SQLite embedded, Redis distributed):
every one is reported (``match: false``), none is replayed as if it were genuine."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.jobs import redis_keys
from service.receipts.keys import SIGNING_KEY_FILE
from service.receipts.signing import ReceiptSigner, generate_pem
from tests.conftest import bearer

MODEL = "german-credit"
QUICK = {"recourse": {"enabled": False}}


class SqliteRecords:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, receipt_id: str) -> dict[str, Any]:
        with sqlite3.connect(self.path) as db:
            (raw,) = db.execute("SELECT body FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return dict(orjson.loads(raw))

    def write(self, receipt_id: str, record: dict[str, Any]) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute(
                "UPDATE receipts SET body = ? WHERE id = ?", (orjson.dumps(record), receipt_id)
            )


class RedisRecords:
    def __init__(self, url: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url)

    def read(self, receipt_id: str) -> dict[str, Any]:
        return dict(orjson.loads(self.redis.get(redis_keys.receipt(receipt_id))))

    def write(self, receipt_id: str, record: dict[str, Any]) -> None:
        self.redis.set(redis_keys.receipt(receipt_id), orjson.dumps(record))


@dataclass
class Target:
    """A deployment under attack: who asks, where receipts are stored, its signing key."""

    client: httpx.Client
    records: SqliteRecords | RedisRecords
    signer: ReceiptSigner  # stolen from the keys folder (the worst case)
    denial: str
    approval: str


def _decide(client: httpx.Client, applicant: dict[str, Any], application_id: str) -> str:
    response = client.post(
        f"/v1/models/{MODEL}/adverse-action",
        json={"applicant": applicant, "application_id": application_id, "options": QUICK},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["receipt_id"])


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def target(request: pytest.FixtureRequest, applicants: list[dict[str, Any]]) -> Iterator[Target]:
    if request.param == "embedded":
        server = request.getfixturevalue("server")
        owner = viewer = httpx.Client(base_url=server.url, timeout=120)
        records: SqliteRecords | RedisRecords = SqliteRecords(Path(server.env["XAI_RECEIPTS_PATH"]))
        keys_dir = Path(server.env["XAI_KEYS_DIR"])
    else:
        cluster = request.getfixturevalue("tenant_cluster")
        owner = httpx.Client(base_url=cluster.gateway.url, headers=bearer("bank-a-officer"))
        viewer = httpx.Client(base_url=cluster.gateway.url, headers=bearer("admin-key"))
        owner.timeout = viewer.timeout = httpx.Timeout(120)
        records = RedisRecords(cluster.redis.url)
        keys_dir = cluster.folder / "keys"
    denial = _decide(owner, applicants[4], f"FORGE-{request.param}-1")
    approval = _decide(owner, applicants[0], f"FORGE-{request.param}-2")
    signer = ReceiptSigner.from_pem((keys_dir / SIGNING_KEY_FILE).read_bytes())
    yield Target(viewer, records, signer, denial, approval)
    owner.close()
    viewer.close()


Forgery = Callable[[dict[str, Any], Target], dict[str, Any]]


def rewrite_as_approval(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["request"]["applicant"]["credit_amount"] = 500.0
    record["response"].update(decision="approved", score=0.81, reasons=[], notice=None)
    return record


def swap_application_id(record: dict[str, Any], target: Target) -> dict[str, Any]:
    old = record["request"]["application_id"]
    record["request"]["application_id"] = record["response"]["application_id"] = "A-OTHER"
    record["response"]["notice"] = record["response"]["notice"].replace(old, "A-OTHER")
    return record


def move_issued_at(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["issued_at"] -= 86_400 * 30
    return record


def change_manifest_hash(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["manifest_hash"] = "0" * 64
    return record


def strip_signature(record: dict[str, Any], target: Target) -> dict[str, Any]:
    del record["signature"]
    return record


def sign_with_a_strangers_key(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["response"]["decision"] = "approved"
    stranger = ReceiptSigner.from_pem(generate_pem())
    return stranger.sign({k: v for k, v in record.items() if k != "signature"})


def genuine_record_of_another_receipt(record: dict[str, Any], target: Target) -> dict[str, Any]:
    return target.records.read(target.approval)


def _resign(record: dict[str, Any], target: Target) -> dict[str, Any]:
    return target.signer.sign({k: v for k, v in record.items() if k != "signature"})


def resign_an_edited_request(record: dict[str, Any], target: Target) -> dict[str, Any]:
    return _resign(swap_application_id(record, target), target)


def resign_for_another_tenant(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["tenant"] = "bank-z"
    return _resign(record, target)


def resign_with_another_seed(record: dict[str, Any], target: Target) -> dict[str, Any]:
    record["seed"] += 1
    return _resign(record, target)


# forgery -> (signature_valid, receipt_id_valid) expected
FORGERIES: dict[str, tuple[Forgery, bool, bool]] = {
    "denial rewritten as an approval, request too": (rewrite_as_approval, False, False),
    "application id swapped in request, response and notice": (swap_application_id, False, False),
    "issued_at moved": (move_issued_at, False, True),
    "manifest_hash changed": (change_manifest_hash, False, True),
    "signature stripped": (strip_signature, False, True),
    "signed with a stranger's key": (sign_with_a_strangers_key, False, True),
    "another receipt's genuine record under this id": (
        genuine_record_of_another_receipt,
        True,
        False,
    ),
    "request edited, re-signed with the stolen signing key": (
        resign_an_edited_request,
        True,
        False,
    ),
    "tenant changed, re-signed with the stolen key": (resign_for_another_tenant, True, False),
    "seed changed, re-signed with the stolen key": (resign_with_another_seed, True, False),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_receipt_never_verifies(target: Target, name: str) -> None:
    forge, signature_valid, id_valid = FORGERIES[name]
    genuine = target.records.read(target.denial)
    target.records.write(target.denial, forge(copy.deepcopy(genuine), target))
    try:
        report = target.client.post(f"/v1/receipts/{target.denial}/verify")
        assert report.status_code == 200, report.text
        verdict = report.json()
        assert verdict["match"] is False and verdict["recourse_match"] is False
        assert verdict["signature_valid"] is signature_valid
        assert verdict["receipt_id_valid"] is id_valid
        assert verdict["replayed_with"] is None and "not replayed" in verdict["problem"]
    finally:
        target.records.write(target.denial, genuine)
    restored = target.client.post(f"/v1/receipts/{target.denial}/verify").json()
    assert restored["match"] is True and restored["signature_valid"] is True
