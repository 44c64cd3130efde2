"""Receipt signatures: canonical bytes, any edit detected, key ids and rotation, private key
files created once, and the offline verification command."""

from __future__ import annotations

import base64
import copy
import json
import multiprocessing
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.gateway.handles import server_secret
from service.receipts.keys import (
    KEYRING_FILE,
    SIGNING_KEY_FILE,
    load_public_keys,
    load_signer,
    rotate,
    signing_key_pem,
)
from service.receipts.signing import PublicKeys, ReceiptSigner, generate_pem, signed_bytes
from service.settings import Settings
from tests.conftest import ROOT


def sample_receipt() -> dict[str, Any]:
    return {
        "receipt_id": "rcpt_0123456789abcdef0123456789abcdef",
        "tenant": "bank-a",
        "issued_at": 1767225600.123456,
        "model": "german-credit",
        "version": "483a45de2e66d749",
        "content_hash": "483a45de" * 8,
        "manifest_hash": "9f" * 32,
        "job_id": "ab" * 32,
        "content_key": "cd" * 32,
        "index": 0,
        "seed": 1601344293,
        "row_seed": 1531362721,
        "request": {
            "applicant": {"age_in_years": 53.0, "credit_amount": 4870.0, "housing": "for free"},
            "application_id": "A-1001",
            "options": {"max_reasons": 4, "recourse": {"enabled": False}},
        },
        "baseline": {"kind": "approved", "rows": 137},
        "response": {
            "application_id": "A-1001",
            "decision": "denied",
            "score": 0.23456789012345678,
            "threshold": 0.5,
            "reasons": [{"code": "CR02", "statement": "Délai de paiement", "value": 1e-7}],
            "notice": "Application: A-1001\nReference: rcpt_0123456789abcdef0123456789abcdef",
        },
    }


@pytest.fixture(scope="module")
def signer() -> ReceiptSigner:
    return ReceiptSigner.from_pem(generate_pem())


@pytest.fixture(scope="module")
def known(signer: ReceiptSigner) -> PublicKeys:
    return PublicKeys({signer.key_id: signer.public_key}, signer.key_id)


def test_a_signed_receipt_verifies_however_its_json_is_formatted(
    signer: ReceiptSigner, known: PublicKeys
) -> None:
    signed = signer.sign(sample_receipt())
    assert signed["signature"]["algorithm"] == "Ed25519"
    assert signed["signature"]["key_id"] == signer.key_id
    assert known.check(signed).valid
    pretty = json.loads(json.dumps(signed, indent=4, ensure_ascii=True))
    reordered = json.loads(json.dumps(dict(reversed(list(pretty.items())))))
    assert known.check(pretty).valid and known.check(reordered).valid
    assert signed_bytes(reordered) == signed_bytes(signed)
    assert signed_bytes(signed).startswith(b'xai-receipt/v1\n{"baseline":{"kind":"approved"')


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        document = document[int(part)] if part.isdigit() else document[part]  # type: ignore[index]
    if value is DELETE:
        del document[last]
    else:
        document[last] = value


DELETE = object()
EDITS = [
    ("response.decision", "approved"),
    ("response.score", 0.9),
    ("response.reasons.0.code", "XX99"),
    ("response.application_id", "A-2002"),
    ("response.notice", "Application: A-2002"),
    ("request.applicant.age_in_years", 35.0),
    ("request.application_id", "A-2002"),
    ("request.options.max_reasons", 1),
    ("issued_at", 1767225601.123456),
    ("manifest_hash", "00" * 32),
    ("content_hash", "00" * 32),
    ("tenant", "bank-b"),
    ("receipt_id", "rcpt_ffffffffffffffffffffffffffffffff"),
    ("seed", 1),
    ("index", 1),
    ("extra", "a field added"),
    ("baseline", DELETE),
    ("signature.value", base64.b64encode(b"\0" * 64).decode()),
    ("signature.algorithm", "HS256"),
    ("signature.key_id", "ed25519-0000000000000000"),
]


@pytest.mark.parametrize(("path", "value"), EDITS, ids=[p for p, _ in EDITS])
def test_any_edit_is_detected(
    signer: ReceiptSigner, known: PublicKeys, path: str, value: Any
) -> None:
    forged = copy.deepcopy(signer.sign(sample_receipt()))
    _set(forged, path, value)
    check = known.check(forged)
    assert not check.valid and check.reason


def test_a_denial_rewritten_as_an_approval_with_its_request_does_not_verify(
    signer: ReceiptSigner, known: PublicKeys
) -> None:
    forged = copy.deepcopy(signer.sign(sample_receipt()))
    forged["request"]["applicant"]["credit_amount"] = 500.0
    forged["response"].update(decision="approved", score=0.81, reasons=[], notice=None)
    assert not known.check(forged).valid
    unsigned = {k: v for k, v in forged.items() if k != "signature"}
    assert known.check(unsigned).reason == "the receipt is not signed"


def test_a_receipt_signed_with_another_key_is_refused(known: PublicKeys) -> None:
    stranger = ReceiptSigner.from_pem(generate_pem())
    own_id = stranger.sign(sample_receipt())
    assert "no known public key" in (known.check(own_id).reason or "")
    claimed = copy.deepcopy(own_id)
    claimed["signature"]["key_id"] = next(iter(known.keys))
    assert not known.check(claimed).valid


def test_rotation_keeps_old_receipts_verifying(tmp_path: Path) -> None:
    settings = Settings(keys_dir=tmp_path / "keys")
    first = load_signer(settings)
    old_receipt = first.sign(sample_receipt())
    old, new = rotate(settings)
    assert old == first.key_id and new != old
    second = load_signer(settings)
    assert second.key_id == new
    keys = load_public_keys(settings)
    assert set(keys.keys) == {old, new} and keys.current == new
    assert keys.check(old_receipt).valid and keys.check(second.sign(sample_receipt())).valid
    published = keys.document()
    assert [k["current"] for k in published["keys"] if k["key_id"] == new] == [True]
    assert PublicKeys.from_document(json.loads(json.dumps(published))).check(old_receipt).valid
    tampered = copy.deepcopy(published)
    swapped = {old: second.public_key, new: first.public_key}  # each id with the other's key
    for entry in tampered["keys"]:
        entry["public_key"] = base64.b64encode(swapped[entry["key_id"]]).decode()
    with pytest.raises(ValueError, match="does not name its public key"):
        PublicKeys.from_document(tampered)


def test_a_configured_key_is_used_and_rotation_leaves_it_to_the_operator(tmp_path: Path) -> None:
    pem = generate_pem()
    settings = Settings(keys_dir=tmp_path / "keys", receipt_signing_key=pem.decode())
    assert load_signer(settings).key_id == ReceiptSigner.from_pem(pem).key_id
    assert not (tmp_path / "keys" / SIGNING_KEY_FILE).exists()
    assert (tmp_path / "keys" / KEYRING_FILE).exists()  # its public key is published
    with pytest.raises(ValueError, match="XAI_RECEIPT_SIGNING_KEY"):
        rotate(settings)


def _first_start(keys_dir: str, go: Any, out: Any) -> None:
    go.wait()  # every process reaches this point, then all create the files at once
    settings = Settings(keys_dir=Path(keys_dir))
    out.put((signing_key_pem(settings), server_secret(settings)))


def test_key_files_are_private_and_one_even_when_processes_start_together(tmp_path: Path) -> None:
    keys_dir = tmp_path / "fresh" / "keys"
    context = multiprocessing.get_context("fork")
    go, out = context.Event(), context.Queue()
    processes = [
        context.Process(target=_first_start, args=(str(keys_dir), go, out)) for _ in range(8)
    ]
    for process in processes:
        process.start()
    go.set()
    seen = {out.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert len(seen) == 1  # every process got the same key and secret
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for name in (SIGNING_KEY_FILE, "server-secret"):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in keys_dir.iterdir() if p.name.endswith(".tmp")) == []


def test_offline_verification_command(
    tmp_path: Path, signer: ReceiptSigner, known: PublicKeys
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(known.document()))
    receipt = tmp_path / "receipt.json"
    forged = tmp_path / "forged.json"
    signed = signer.sign(sample_receipt())
    receipt.write_text(json.dumps(signed, indent=2))
    forged.write_text(json.dumps({**signed, "issued_at": signed["issued_at"] + 1}))

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "service.cli", "receipts", "verify", str(path)]
        return subprocess.run(
            [*command, "--keys", str(keys)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    good, bad = verify(receipt), verify(forged)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["signature_valid"] is True
    assert bad.returncode == 1 and json.loads(bad.stdout)["signature_valid"] is False
    assert "altered" in json.loads(bad.stdout)["problem"]
