"""Endpoint faults: 5xx, time-outs, connection refused, malformed and wrongly shaped
answers are retried with backoff within the call's deadline, then fail with a 503 naming
the endpoint and the error; answers that become right are used; secrets stay secret."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.registry.loaded import LoadedModel
from service.registry.manifest import parse_manifest
from service.registry.remote import policy
from service.registry.remote.errors import RemoteUnavailableError
from service.registry.remote.predictor import RemotePredictor
from tests.conftest import free_port
from tests.remote.conftest import demo_manifest, remote_manifest
from tests.remote.stub import StubServer

NAME = "german-credit-logit"


@pytest.fixture(autouse=True)
def task() -> Iterator[None]:
    """Each test runs as one worker task, with retries for 10 s (a loaded machine's stub
    can be slow) unless it sets a shorter budget."""
    retries(10)
    yield
    policy.configure(policy.RemotePolicy())
    policy.begin_task()


def retries(seconds: float) -> None:
    policy.configure(policy.RemotePolicy(retry_seconds=seconds))
    policy.begin_task()


@pytest.fixture(scope="module")
def local(demo_models: dict[str, LoadedModel]) -> LoadedModel:
    return demo_models[NAME]


@pytest.fixture
def stub(local: LoadedModel) -> Iterator[StubServer]:
    server = StubServer(local.predictor.model, NAME)  # type: ignore[attr-defined]
    with server.running():
        yield server


def predictor(url: str, **artifact: Any) -> RemotePredictor:
    manifest = parse_manifest(remote_manifest(demo_manifest(NAME), "stubbed", url, **artifact))
    return RemotePredictor(manifest)


@pytest.fixture
def rows(local: LoadedModel) -> pd.DataFrame:
    return local.reference.iloc[:40]


@pytest.mark.parametrize("fault", ["500", "503", "slow", "garbage", "short", "wide", "nan"])
def test_a_passing_fault_is_retried(
    stub: StubServer, local: LoadedModel, rows: pd.DataFrame, fault: str
) -> None:
    stub.slow_seconds = 4.0
    stub.faults.extend([fault, fault])
    remote = predictor(stub.url, timeout_s=2.0 if fault == "slow" else 10)
    np.testing.assert_array_equal(remote.probability(rows), local.predictor.probability(rows))
    assert remote.client.stats.retries == 2 and remote.client.stats.requests == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "HTTP 500"),
        ("slow", "timed out"),
        ("garbage", "malformed answer: the answer is not JSON"),
        ("short", "malformed answer: the answer has 39 rows for 40 sent"),
        ("wide", "malformed answer: a binary classifier's answer has 1 or 2 columns"),
        ("labels", "is BYTES, not numbers"),
    ],
)
def test_a_lasting_fault_fails_with_the_endpoint_and_the_reason(
    stub: StubServer, rows: pd.DataFrame, fault: str, reason: str
) -> None:
    retries(4)
    stub.always = fault
    named = {"output_name": None} if fault == "labels" else {}  # the server's only output
    remote = predictor(stub.url, timeout_s=0.4 if fault == "slow" else 10, **named)
    started = time.monotonic()
    with pytest.raises(RemoteUnavailableError) as failed:
        remote.probability(rows)
    elapsed = time.monotonic() - started
    assert failed.value.status_code == 503 and failed.value.code == "remote_unavailable"
    message = failed.value.message
    assert message.startswith(f"model endpoint {stub.url} (open-inference-v2, model {NAME})")
    assert reason in message and "attempts in" in message
    assert elapsed < 4 + 3  # the retry budget (no attempt outlives it) and some slack
    # later calls in the same task fail at once; the task ends with the failure
    started = time.monotonic()
    with pytest.raises(RemoteUnavailableError):
        remote.probability(rows)
    assert time.monotonic() - started < 0.1
    with pytest.raises(RemoteUnavailableError):
        policy.end_task()


def test_an_answer_the_endpoint_refuses_is_not_retried(
    stub: StubServer, rows: pd.DataFrame
) -> None:
    stub.always = "404"
    remote = predictor(stub.url)
    with pytest.raises(RemoteUnavailableError, match=r"HTTP 404: .*\(1 attempt in"):
        remote.probability(rows)


def test_connection_refused(rows: pd.DataFrame) -> None:
    retries(1.5)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteUnavailableError, match="connection failed") as failed:
        predictor(url).probability(rows)
    assert url in failed.value.message


def test_retries_stop_before_the_task_time_limit(stub: StubServer, rows: pd.DataFrame) -> None:
    policy.configure(policy.RemotePolicy(retry_seconds=60, time_limit=3.5))
    policy.begin_task()  # the task may run 3.5 s: retries stop 2 s before
    stub.always = "503"
    started = time.monotonic()
    with pytest.raises(RemoteUnavailableError):
        predictor(stub.url).probability(rows)
    assert time.monotonic() - started < 2.5


def test_large_frames_are_split_and_sent_concurrently(stub: StubServer, local: LoadedModel) -> None:
    rows = pd.concat([local.reference] * 3, ignore_index=True)  # 600 rows, 200 distinct
    rows["credit_amount"] = np.arange(len(rows), dtype=float) + 100.0  # all distinct
    remote = predictor(stub.url, max_rows_per_call=64, max_concurrency=3)
    np.testing.assert_array_equal(remote.probability(rows), local.predictor.probability(rows))
    assert remote.client.stats.requests == 10 and remote.client.stats.rows == 600
    assert max(len(r["inputs"][0]["data"]) for r in stub.requests) == 64


def test_each_distinct_row_is_sent_once(stub: StubServer, local: LoadedModel) -> None:
    rows = pd.concat([local.reference.iloc[:50]] * 4, ignore_index=True)
    remote = predictor(stub.url)
    np.testing.assert_array_equal(remote.probability(rows), local.predictor.probability(rows))
    assert remote.client.stats.rows == 50


def test_the_authorization_value_comes_from_the_environment(
    stub: StubServer, rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = predictor(stub.url, auth_env="XAI_TEST_REMOTE_TOKEN")
    monkeypatch.delenv("XAI_TEST_REMOTE_TOKEN", raising=False)
    with pytest.raises(RemoteUnavailableError) as failed:
        remote.probability(rows)
    assert "XAI_TEST_REMOTE_TOKEN" in failed.value.message and stub.requests == []
    retries(1.5)
    monkeypatch.setenv("XAI_TEST_REMOTE_TOKEN", "Bearer s3cret-value")
    stub.always = "500"
    with pytest.raises(RemoteUnavailableError) as failed:
        remote.probability(rows)
    assert stub.headers[-1]["authorization"] == "Bearer s3cret-value"
    assert "s3cret" not in failed.value.message


def test_the_request_is_a_pandas_frame_for_mlserver(stub: StubServer, rows: pd.DataFrame) -> None:
    predictor(stub.url).probability(rows.iloc[:3])
    body = stub.requests[0]
    assert body["parameters"] == {"content_type": "pd"}
    assert body["outputs"] == [{"name": "predict_proba"}]
    inputs = {i["name"]: i for i in body["inputs"]}
    assert list(inputs) == list(rows.columns)
    housing, duration, amount = (
        inputs["housing"],
        inputs["duration_in_month"],
        inputs["credit_amount"],
    )
    assert housing["datatype"] == "BYTES" and housing["parameters"] == {"content_type": "str"}
    assert housing["data"] == rows["housing"].iloc[:3].tolist() and housing["shape"] == [3, 1]
    assert duration["datatype"] == "INT64" and duration["data"] == [
        int(v) for v in rows["duration_in_month"].iloc[:3]
    ]
    assert amount["datatype"] in ("INT64", "FP64")


def test_answers_are_asked_for_uncompressed(stub: StubServer, rows: pd.DataFrame) -> None:
    """MLServer gzips large answers unless told not to: costly on both sides, for numbers
    sent between neighbouring hosts."""
    predictor(stub.url).probability(rows.iloc[:3])
    assert stub.headers[0]["accept-encoding"] == "identity"
