"""Tenants over HTTP: what one tenant submitted is invisible to others (the same 404 as an
unknown id), ids cannot be computed from a request, admins see everything; embedded and
distributed."""

from __future__ import annotations

import json
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.gateway.auth import UnauthorizedError, authenticate
from service.gateway.dataplane import explain_work
from service.gateway.schemas import ExplainRequest
from service.jobs.keys import content_key, derived_seed
from service.registry.schema import validate_instances
from service.registry.store import ModelStore
from service.settings import Scope, Settings
from tests.conftest import TENANT_KEYS, ServerProcess, bearer
from tests.gateway.test_api import metric, poll

MODEL = "german-credit"
OUTSIDERS = ("bank-b-officer", "plain-key")
QUICK = {"recourse": {"enabled": False}}


def test_keys_name_their_tenant_in_either_format() -> None:
    settings = Settings(api_keys=TENANT_KEYS)
    a1, a2, b, plain, admin = (authenticate(settings, f"Bearer {k}") for k in TENANT_KEYS)
    assert a1.tenant == a2.tenant == "bank-a" and b.tenant == "bank-b"
    assert plain.tenant.startswith("key:") and "plain-key" not in plain.tenant
    assert plain.scopes == {Scope.explain} and not plain.admin and admin.admin
    assert a1.sees("bank-a") and not a1.sees("bank-b") and admin.sees("bank-b")
    for header in (None, "Bearer nope", "Basic plain-key", "Bearer "):
        with pytest.raises(UnauthorizedError):
            authenticate(settings, header)
    open_demo = authenticate(Settings(), None)  # no keys: one tenant, everything allowed
    assert open_demo.tenant == "default" and open_demo.admin


def test_a_bad_grant_is_named_by_position_never_by_its_key() -> None:
    for grant in (["explian"], {"scopes": ["explain"], "tenant": "a:b"}, "explain"):
        with pytest.raises(ValueError, match="API key #2") as raised:
            Settings(api_keys={"fine-key": ["explain"], "s3cret-value": grant})
        assert "s3cret-value" not in str(raised.value)


@pytest.fixture(scope="module")
def tenants(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    keys_dir = tmp_path_factory.mktemp("tenant-keys")
    process = ServerProcess(
        models_dir, {"XAI_API_KEYS": json.dumps(TENANT_KEYS), "XAI_KEYS_DIR": str(keys_dir)}
    )
    del process.env["XAI_SERVER_SECRET"]  # generated into the keys folder on first start
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def as_key(tenants: ServerProcess) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        key: httpx.Client(base_url=tenants.url, headers=bearer(key), timeout=120)
        for key in TENANT_KEYS
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def bank_a(as_key: dict[str, httpx.Client], applicants: list[dict[str, Any]]) -> dict[str, Any]:
    """What bank-a owns: an explain job, an adverse-action batch job and its receipts."""
    officer = as_key["bank-a-officer"]
    explained = officer.post(
        f"/v1/models/{MODEL}/explain", json={"instances": [applicants[4]], "methods": ["shap"]}
    )
    assert explained.status_code == 200, explained.text
    batch = officer.post(
        f"/v1/models/{MODEL}/adverse-action/batch",
        json={"applicants": applicants[2:6], "options": QUICK, "wait": 60},
    )
    assert batch.status_code == 200, batch.text
    rows = batch.json()["results"]
    assert any(r["decision"] == "denied" for r in rows)
    return {
        "explain_job": explained.json()["job_id"],
        "explain_body": explained.content,
        "batch_job": batch.json()["job_id"],
        "receipts": [r["receipt_id"] for r in rows],
    }


def same_as_unknown(client: httpx.Client, method: str, template: str, real: str) -> None:
    """``real`` answers exactly as an id that never existed: status, type and body."""
    fake = f"rcpt_{secrets.token_hex(16)}" if real.startswith("rcpt_") else secrets.token_hex(32)
    seen = client.request(method, template.format(id=real))
    unknown = client.request(method, template.format(id=fake))
    assert seen.status_code == unknown.status_code == 404, seen.text
    assert seen.headers["content-type"] == unknown.headers["content-type"]
    assert seen.content.replace(real.encode(), fake.encode()) == unknown.content


JOB_READS = [
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/result"),
    ("GET", "/v1/jobs/{id}/result?format=jsonl"),
    ("GET", "/v1/jobs/{id}/result?format=csv"),
    ("GET", "/v1/jobs/{id}/result?format=notices"),
    ("DELETE", "/v1/jobs/{id}"),
]
RECEIPT_READS = [("GET", "/v1/receipts/{id}"), ("POST", "/v1/receipts/{id}/verify")]


@pytest.mark.parametrize("outsider", OUTSIDERS)
def test_another_tenant_gets_the_404_of_an_unknown_id(
    as_key: dict[str, httpx.Client], bank_a: dict[str, Any], outsider: str
) -> None:
    client = as_key[outsider]
    for method, template in JOB_READS:
        same_as_unknown(client, method, template, bank_a["batch_job"])
    same_as_unknown(client, "GET", "/v1/jobs/{id}", bank_a["explain_job"])
    same_as_unknown(client, "GET", "/v1/plots/waterfall?job_id={id}", bank_a["explain_job"])
    for receipt_id in bank_a["receipts"][:2]:
        for method, template in RECEIPT_READS:
            same_as_unknown(client, method, template, receipt_id)
    # nothing was cancelled or changed by those requests
    owner = as_key["bank-a-officer"]
    assert owner.get(f"/v1/jobs/{bank_a['batch_job']}").json()["status"] == "succeeded"


def test_every_key_of_a_tenant_and_the_admin_see_its_jobs_and_receipts(
    as_key: dict[str, httpx.Client], bank_a: dict[str, Any]
) -> None:
    for key in ("bank-a-backend", "admin-key"):
        client = as_key[key]
        job = bank_a["batch_job"]
        assert client.get(f"/v1/jobs/{job}").json()["status"] == "succeeded"
        for fmt in ("json", "jsonl", "csv", "notices"):
            answer = client.get(f"/v1/jobs/{job}/result", params={"format": fmt})
            assert answer.status_code == 200 and answer.content, (key, fmt)
        plot = client.get("/v1/plots/waterfall", params={"job_id": bank_a["explain_job"]})
        assert plot.status_code == 200 and plot.content.startswith(b"<?xml")
        receipt = client.get(f"/v1/receipts/{bank_a['receipts'][0]}").json()
        assert receipt["tenant"] == "bank-a" and receipt["job_id"] == job
        verified = client.post(f"/v1/receipts/{bank_a['receipts'][0]}/verify").json()
        assert verified["signature_valid"] and verified["receipt_id_valid"] and verified["match"]


def test_identical_work_is_computed_once_but_each_tenant_has_its_own_id(
    as_key: dict[str, httpx.Client], applicants: list[dict[str, Any]]
) -> None:
    request = {"instances": applicants[40:43], "methods": ["shap"]}
    first = as_key["bank-a-officer"].post(f"/v1/models/{MODEL}/explain", json=request)
    same_tenant = as_key["bank-a-backend"].post(f"/v1/models/{MODEL}/explain", json=request)
    submitted = metric(as_key["admin-key"], "xai_jobs_submitted_total")
    other = as_key["bank-b-officer"].post(f"/v1/models/{MODEL}/explain", json=request)
    again = as_key["bank-b-officer"].post(f"/v1/models/{MODEL}/explain", json=request)
    assert metric(as_key["admin-key"], "xai_jobs_submitted_total") == submitted  # from cache
    assert first.headers["x-cache"] == "miss" and same_tenant.headers["x-cache"] == "hit"
    assert same_tenant.content == first.content  # same tenant, same request: same bytes
    # another tenant: its own job id; the cache hit is not disclosed on its first answer
    assert other.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert other.json()["job_id"] != first.json()["job_id"] and again.content == other.content
    assert {**other.json(), "job_id": ""} == {**first.json(), "job_id": ""}
    own = as_key["bank-b-officer"].get(f"/v1/jobs/{other.json()['job_id']}").json()
    assert own["status"] == "succeeded" and own["result"] == other.json()


def test_adverse_action_decisions_are_per_tenant_with_the_same_decision(
    as_key: dict[str, httpx.Client], applicant: dict[str, Any]
) -> None:
    request = {"applicant": applicant, "application_id": "SHARED-1", "options": QUICK}
    a = as_key["bank-a-officer"].post(f"/v1/models/{MODEL}/adverse-action", json=request).json()
    b = as_key["bank-b-officer"].post(f"/v1/models/{MODEL}/adverse-action", json=request).json()
    assert a["receipt_id"] != b["receipt_id"] and a["receipt_id"] not in b["notice"]
    assert (a["decision"], a["reasons"], a["evidence"]) == (
        b["decision"],
        b["reasons"],
        b["evidence"],
    )
    receipt = as_key["bank-b-officer"].get(f"/v1/receipts/{b['receipt_id']}").json()
    assert receipt["tenant"] == "bank-b"


def test_cancel_by_another_tenant_is_404_and_the_job_goes_on(
    as_key: dict[str, httpx.Client], applicants: list[dict[str, Any]]
) -> None:
    slow = {
        "instances": applicants[500:503],
        "wait": 0,
        "options": {"shap": {"algorithm": "sampling", "permutations": 2048}},
    }
    owner = as_key["bank-a-officer"]
    job_id = owner.post(f"/v1/models/{MODEL}/explain", json=slow).json()["job_id"]
    try:
        refused = as_key["bank-b-officer"].delete(f"/v1/jobs/{job_id}")
        assert refused.status_code == 404
        assert owner.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "running")
    finally:
        cancelled = as_key["admin-key"].delete(f"/v1/jobs/{job_id}")  # the admin may
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert poll(owner, job_id, {"cancelled"})["status"] == "cancelled"


def test_the_offline_id_oracle_no_longer_works(
    as_key: dict[str, httpx.Client], models_dir: Path, applicant: dict[str, Any]
) -> None:
    """The attack of issue 10: knowing every field of another client's applicant but the
    age, compute the job id of each guess from the public content hash and probe
    ``GET /v1/jobs/{id}``. The ids computed are exactly the old job ids (the victim's
    seed is derived from the right one), and none of them names a job any more."""
    victim = as_key["bank-a-officer"].post(
        f"/v1/models/{MODEL}/explain", json={"instances": [applicant], "methods": ["shap"]}
    )
    assert victim.status_code == 200, victim.text
    attacker = as_key["bank-b-officer"]
    detail = attacker.get(f"/v1/models/{MODEL}").json()
    content_hash = next(
        v["content_hash"] for v in detail["versions"] if v["version"] == detail["latest_version"]
    )
    store = ModelStore(models_dir)
    store.scan()
    manifest = store.get(MODEL).manifest
    guesses = {}
    for age in range(19, 76):
        guess = {**applicant, "age_in_years": age}
        methods, _, options = explain_work(ExplainRequest(instances=[guess], methods=["shap"]))
        instances = validate_instances(manifest, [guess])
        guesses[age] = content_key(
            content_hash, "explain", methods, {"seed": None, **options}, instances
        )
    assert derived_seed(guesses[applicant["age_in_years"]]) == victim.json()["seed"]
    started = time.monotonic()
    probes = {age: attacker.get(f"/v1/jobs/{key}").status_code for age, key in guesses.items()}
    assert set(probes.values()) == {404}, probes
    assert victim.json()["job_id"] not in guesses.values()
    # not even the victim can address its job by the content key
    true_key = guesses[applicant["age_in_years"]]
    assert as_key["bank-a-officer"].get(f"/v1/jobs/{true_key}").status_code == 404
    # asking for the right guess itself does not say the work was done before
    own = attacker.post(
        f"/v1/models/{MODEL}/explain", json={"instances": [applicant], "methods": ["shap"]}
    )
    assert own.headers["x-cache"] == "miss" and own.json()["job_id"] != victim.json()["job_id"]
    assert time.monotonic() - started < 60


def test_the_server_secret_is_generated_private_and_never_shown(
    tenants: ServerProcess, as_key: dict[str, httpx.Client], bank_a: dict[str, Any]
) -> None:
    keys_dir = Path(tenants.env["XAI_KEYS_DIR"])
    secret_file = keys_dir / "server-secret"
    signing_key = keys_dir / "receipt-signing-key.pem"
    for path in (secret_file, signing_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) == 64
    key_body = b"".join(signing_key.read_bytes().splitlines()[1:-1])
    seen = [
        as_key["admin-key"].get(f"/v1/jobs/{bank_a['batch_job']}").content,
        as_key["admin-key"].get(f"/v1/receipts/{bank_a['receipts'][0]}").content,
        as_key["admin-key"].get("/v1/receipts/keys").content,
        as_key["admin-key"].get("/metrics").content,
        tenants.log.read_bytes(),
    ]
    for text in seen:
        assert secret.encode() not in text and key_body not in text


def test_tenants_in_distributed_mode(tenant_cluster: Any, applicants: list[dict[str, Any]]) -> None:
    """The same isolation with Celery workers and Redis as the job store and cache."""
    url = tenant_cluster.gateway.url
    a, b, admin = (
        httpx.Client(base_url=url, headers=bearer(k), timeout=120)
        for k in ("bank-a-officer", "bank-b-officer", "admin-key")
    )
    request = {"instances": applicants[60:62], "methods": ["shap"], "wait": 60}
    first = a.post(f"/v1/models/{MODEL}/explain", json=request)
    assert first.status_code == 200, first.text
    submitted = metric(admin, "xai_jobs_submitted_total")
    other = b.post(f"/v1/models/{MODEL}/explain", json=request)
    assert metric(admin, "xai_jobs_submitted_total") == submitted  # served from the cache
    assert other.headers["x-cache"] == "miss" and other.json()["job_id"] != first.json()["job_id"]
    assert {**other.json(), "job_id": ""} == {**first.json(), "job_id": ""}
    assert b.get(f"/v1/jobs/{other.json()['job_id']}/result").json() == other.json()

    decided = a.post(
        f"/v1/models/{MODEL}/adverse-action/batch",
        json={"applicants": applicants[2:5], "options": QUICK, "wait": 60},
    )
    assert decided.status_code == 200, decided.text
    job_id = decided.json()["job_id"]
    receipt_id = decided.json()["results"][0]["receipt_id"]
    for method, template in JOB_READS:
        same_as_unknown(b, method, template, job_id)
    same_as_unknown(b, "GET", "/v1/jobs/{id}", first.json()["job_id"])
    for method, template in RECEIPT_READS:
        same_as_unknown(b, method, template, receipt_id)
    assert admin.get(f"/v1/jobs/{job_id}/result", params={"format": "csv"}).status_code == 200
    verified = admin.post(f"/v1/receipts/{receipt_id}/verify").json()
    assert verified["signature_valid"] and verified["receipt_id_valid"] and verified["match"]
    assert a.get(f"/v1/receipts/{receipt_id}").json()["tenant"] == "bank-a"
    for client in (a, b, admin):
        client.close()
