"""The HTTP contract: api_schema/openapi.json is current, the live service keeps it, and a
client generated from it works unmodified.

1. Drift: the committed document is what the code renders, byte for byte; readable operation
   ids; every request body has an example.
2. Conformance: schemathesis fuzzes every operation of the *committed* document against a live
   ``xai-service serve``: no 5xx; status codes, headers, content types and bodies as declared.
3. Generated client: openapi-python-client output, imported unmodified, predicts and explains.
4. Examples: every file in api_schema/examples/ is a valid request body answered with 200.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema_rs
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    missing_required_header,
    positive_data_acceptance,
)

from service.explainers.base import CONSTRAINTS
from service.gateway.app import create_app
from service.gateway.openapi import render_openapi
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "api_schema" / "openapi.json"
EXAMPLES = ROOT / "api_schema" / "examples"
MODELS = ("german-credit", "german-credit-logit")
OPERATION_IDS = {
    "healthz",
    "readyz",
    "metrics",
    "list_models",
    "get_model",
    "register_model",
    "predict",
    "explain",
    "get_job",
    "cancel_job",
    "get_job_result",
    "adverse_action",
    "adverse_action_batch",
    "get_receipt",
    "verify_receipt",
    "receipt_keys",
    "delete_model_version",
    "explain_global",
    "plot_waterfall",
    "plot_importance",
    "plot_beeswarm",
    "plot_pdp",
    "plot_ale",
}
# Which operation and model each file of api_schema/examples/ is for.
EXAMPLE_TARGETS = {
    "predict.json": ("predict", "german-credit"),
    "explain.json": ("explain", "german-credit"),
    "explain-logit-probability.json": ("explain", "german-credit-logit"),
    "adverse-action.json": ("adverse_action", "german-credit"),
    "adverse-action-batch.json": ("adverse_action_batch", "german-credit-logit"),
    "global.json": ("explain_global", "german-credit"),
}
CONTRACT_SEED = 20261202
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
GLOBAL_CURVES = ("pdp", "ice", "ale")
IMAGE_TYPES = ("image/svg+xml", "image/png")


def contract() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """operationId -> operation object, with its path and method."""
    found: dict[str, dict[str, Any]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                found[operation["operationId"]] = {**operation, "path": path, "method": method}
    return found


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def validator(document: dict[str, Any], node: dict[str, Any]) -> Any:
    """A JSON-schema validator for ``node`` whose $refs resolve inside ``document``."""
    return jsonschema_rs.Draft202012Validator({**node, "components": document["components"]})


# ---------------------------------------------------------------------------------------------
# 1. The committed document is the one the code renders.


def test_committed_openapi_is_current() -> None:
    rendered = render_openapi(create_app(Settings()))
    committed = OPENAPI.read_text(encoding="utf-8")
    if rendered != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                "api_schema/openapi.json (committed)",
                "render_openapi(create_app(Settings()))",
            )
        )
        shown = diff if len(diff) < 6000 else diff[:6000] + "\n... (diff truncated)\n"
        pytest.fail(
            "The HTTP contract changed: api_schema/openapi.json differs from what the code "
            "renders. If the change is intended, run `xai-service openapi` (or `make openapi`), "
            "review the diff and commit api_schema/openapi.json deliberately together with the "
            "code change; otherwise undo the change to the API.\n\n" + shown,
            pytrace=False,
        )


def test_operation_ids_are_the_readable_set() -> None:
    document = contract()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(ids)}"
    assert set(ids) == OPERATION_IDS, (
        f"new: {sorted(set(ids) - OPERATION_IDS)}, gone: {sorted(OPERATION_IDS - set(ids))}; "
        "an operation's id is its route's name=, a readable snake_case verb: list it here"
    )


@pytest.mark.parametrize(
    "operation_id",
    sorted(o for o, spec in operations(contract()).items() if "requestBody" in spec),
)
def test_request_body_has_an_example(operation_id: str) -> None:
    document = contract()
    body = resolve(document, operations(document)[operation_id]["requestBody"])
    for media_type, content in body["content"].items():
        body_schema = resolve(document, content.get("schema", {}))
        examples = [
            *([content["example"]] if "example" in content else []),
            *(e["value"] for e in content.get("examples", {}).values() if "value" in e),
            *([body_schema["example"]] if "example" in body_schema else []),
            *body_schema.get("examples", []),
        ]
        external = [e for e in content.get("examples", {}).values() if "externalValue" in e]
        assert examples or external, f"{operation_id}: its {media_type} body has no example"
        if media_type == "application/json":
            check = validator(document, content["schema"])
            for example in examples:
                check.validate(example)  # an example the contract itself would refuse is a bug


# ---------------------------------------------------------------------------------------------
# 2. The live service keeps the committed contract (schemathesis, bounded for CI).

schema = schemathesis.openapi.from_path(OPENAPI)
# The `server` fixture runs without API keys (open on loopback), so the declared bearer auth is
# not enforced there: generating Authorization headers or probing for 401s would only test that
# mode, not the contract.
schema.config.generation.update(with_security_parameters=False, deterministic=True)
# Reproducible: the same cases on every run and machine (a failure is a bug to fix, not luck).
schema.config.seed = CONTRACT_SEED

# Realistic inputs, so that generated requests also get past what a static document cannot
# describe (model names, versions, feature schemas, job ids) and reach the models and the jobs.
POOL: list[dict[str, Any]] = [
    {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    for row in pd.read_csv(ROOT / "data" / "german_credit.csv", nrows=40)
    .drop(columns="creditability")
    .to_dict("records")
]
FEATURES = sorted(POOL[0])


def _version_queries(model: str) -> list[str | None]:
    """The ?version= values a caller may send for a served model: none (latest), an id, a prefix."""
    ids = sorted(p.name for p in (ROOT / "models" / model).iterdir() if p.is_dir())
    return [None, *ids, *(i[:6] for i in ids)]


VERSIONS = {model: _version_queries(model) for model in MODELS}
# Job ids the service handed out in this session; get_job/cancel_job draw from them.
KNOWN_JOBS: list[str] = []
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


def _perturbed(row: dict[str, Any], feature: str, value: Any, how: str) -> dict[str, Any]:
    changed = dict(row)
    if how == "drop":
        changed.pop(feature)
    elif how == "extra":
        changed[f"{feature}_x"] = value
    else:
        changed[feature] = value
    return changed


# Mostly real applicants, sometimes one with a missing, extra or wrongly typed feature.
INSTANCES = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(POOL),
    st.builds(
        _perturbed,
        st.sampled_from(POOL),
        st.sampled_from(FEATURES),
        JSON_VALUES,
        st.sampled_from(["replace", "replace", "drop", "extra"]),
    ),
)


def _model_and_version() -> Any:
    return st.sampled_from(MODELS).flatmap(
        lambda m: st.tuples(st.just(m), st.sampled_from(VERSIONS[m]))
    )


def _realistic(case: Any) -> Any:
    """A strategy of coherent, plausible values for ``case``'s operation, or None."""
    path = case.operation.path
    if path.startswith("/v1/jobs/"):
        if not KNOWN_JOBS:
            return None
        return st.fixed_dictionaries({"job_id": st.sampled_from(KNOWN_JOBS)})
    if "{name}" not in path:
        return None
    drawn: dict[str, Any] = {"model": _model_and_version()}
    if path.endswith(("/predict", "/explain")) and isinstance(case.body, dict):
        drawn["instances"] = st.lists(INSTANCES, min_size=1, max_size=3)
        if path.endswith("/explain"):
            drawn["wait"] = st.sampled_from([0, 5])  # 0: answered 202, polled by the test
    return st.fixed_dictionaries(drawn)


def _apply(case: Any, drawn: dict[str, Any]) -> Any:
    if "job_id" in drawn:
        case.path_parameters = {**case.path_parameters, "job_id": drawn["job_id"]}
    if "model" in drawn:
        model, version = drawn["model"]
        case.path_parameters = {**case.path_parameters, "name": model}
        query = {k: v for k, v in (case.query or {}).items() if k != "version"}
        case.query = {**query, **({"version": version} if version else {})}
    if "instances" in drawn:
        body = {**case.body, "instances": drawn["instances"]}
        if "wait" in drawn:
            body["wait"] = drawn["wait"]
            if "options" in body:
                body["options"] = _quick(body["options"])
        case.body = body
    return case


def _quick(options: Any) -> Any:
    """Options real applicants are explained with in about a second (sampling SHAP with 2048
    permutations over 200 reference rows takes minutes; such jobs are covered by live_jobs)."""
    shap = options.get("shap") if isinstance(options, dict) else None
    if not isinstance(shap, dict):
        return options
    shap = dict(shap)
    if isinstance(shap.get("permutations"), int) and shap["permutations"] > 16:
        shap["permutations"] = 16 - shap["permutations"] % 2  # keep odd numbers odd
    if isinstance(shap.get("background_rows"), int) and shap["background_rows"] > 20:
        shap["background_rows"] = 20
    return {**options, "shap": shap}


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Make two in three positive cases plausible: a served model and version (or a job id
    the service issued) and real applicants; the rest stay as generated.

    Negative cases are left alone: they must stay invalid to be expected to be rejected.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return st.just(case)
    realistic = _realistic(case)
    if realistic is None:
        return st.just(case)
    plausible = realistic.map(lambda drawn: _apply(case, drawn))
    return st.one_of(plausible, plausible, st.just(case))


def _body_detail(response: Any) -> Any:
    try:
        return response.json().get("detail")
    except (ValueError, AttributeError):
        return None


def constrained_locations(document: dict[str, Any], operation: dict[str, Any]) -> list[tuple]:
    """Body locations of the fields the contract marks with ``x-constraints``: rules a JSON
    schema cannot state (checked against the model named in the path, or across values,
    such as ``min <= max``). ``"*"`` stands for any key or index."""
    found: list[tuple] = []

    def walk(node: dict[str, Any], loc: tuple, depth: int) -> None:
        if depth > 16:
            return
        if CONSTRAINTS in node:
            found.append(loc)
            return
        node = resolve(document, node)
        if CONSTRAINTS in node:
            found.append(loc)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                walk(option, loc, depth + 1)
        for name, child in node.get("properties", {}).items():
            walk(child, (*loc, name), depth + 1)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], (*loc, "*"), depth + 1)
        for child in node.get("prefixItems", []):
            walk(child, (*loc, "*"), depth + 1)

    body = resolve(document, operation.get("requestBody", {}))
    for content in body.get("content", {}).values():
        walk(content.get("schema", {}), ("body",), 0)
    return found


@functools.cache
def _constrained(path: str, method: str) -> list[tuple]:
    document = contract()
    return constrained_locations(document, document["paths"][path][method])


def _within(loc: list[Any], constrained: tuple) -> bool:
    return len(loc) >= len(constrained) and all(
        want in ("*", got) for want, got in zip(constrained, loc, strict=False)
    )


def positive_data_acceptance_within_contract(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, less the constraints the contract states
    beyond JSON Schema.

    A request valid by the document's JSON schemas may get a 422 for a rule the document
    states in ``x-constraints`` on the field (an instance checked against the feature
    schema of the model in the path, ``permitted_range`` pairs with min > max, a SHAP
    algorithm the model does not offer, ...), and an upload is checked against its own
    manifest. A 422 about any other field means the contract promises more than the
    service keeps.
    """
    if response.status_code == 422:
        if case.operation.path == "/v1/models":
            return None
        issues = _body_detail(response)
        constrained = _constrained(case.operation.path, case.operation.method.lower())
        if isinstance(issues, list) and issues:
            if all(any(_within(i["loc"], c) for c in constrained) for i in issues):
                return None
    return positive_data_acceptance(ctx, response, case)


EXCLUDED_CHECKS = [
    ignored_auth,  # no API keys on the test server (see above)
    missing_required_header,  # the only required header is Authorization
    positive_data_acceptance,  # replaced by positive_data_acceptance_within_contract
]


@pytest.fixture(scope="module")
def live_jobs(server: Any, client: httpx.Client) -> Iterator[list[str]]:
    """Jobs the service knows before fuzzing starts: finished ones and one still running."""
    for model in MODELS:
        done = client.post(f"/v1/models/{model}/predict", json={"instances": POOL[:2]})
        assert done.status_code == 200, done.text
        KNOWN_JOBS.append(done.json()["job_id"])
    slow = {"algorithm": "sampling", "permutations": 2048}
    running = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": POOL[:5], "options": {"shap": slow}, "wait": 0},
    )
    assert running.status_code == 202, running.text
    KNOWN_JOBS.append(running.json()["job_id"])
    yield KNOWN_JOBS
    for job_id in KNOWN_JOBS:  # leave no work behind for later tests
        client.delete(f"/v1/jobs/{job_id}")


@pytest.fixture(scope="module")
def untouched_repository_models() -> Iterator[None]:
    """register_model is called: only ever in the server's scratch copy, never in models/."""

    def snapshot() -> dict[str, bytes]:
        files = (p for p in (ROOT / "models").rglob("*") if p.is_file())
        return {str(p.relative_to(ROOT)): p.read_bytes() for p in files}

    before = snapshot()
    yield
    assert snapshot() == before, "the contract tests changed the repository's models/"


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_service_conforms_to_contract(
    case: Any, server: Any, live_jobs: list[str], untouched_repository_models: None
) -> None:
    assert Path(server.env["XAI_MODELS_DIR"]).resolve() != (ROOT / "models").resolve()
    response = case.call_and_validate(
        base_url=server.url,
        timeout=90,
        excluded_checks=EXCLUDED_CHECKS,
        additional_checks=[positive_data_acceptance_within_contract],
    )
    inference = case.operation.path.endswith(
        ("/predict", "/explain", "/adverse-action", "/adverse-action/batch")
    )
    if inference and response.status_code in (200, 202):
        job_id = response.json()["job_id"]
        if job_id not in KNOWN_JOBS:
            KNOWN_JOBS.append(job_id)
        if response.status_code == 202:
            follow_up(server.url, response)


def follow_up(base_url: str, accepted: Any, patience: float = 5.0) -> None:
    """Poll an accepted job at its Location until it ends; cancel it if it takes longer."""
    location = accepted.json()["location"]
    assert accepted.headers.get("location") == [location]  # schemathesis: lowercase, lists
    url = base_url + location
    deadline = time.monotonic() + patience
    while True:
        status = httpx.get(url, timeout=30)
        assert status.status_code == 200, status.text
        schema["/v1/jobs/{job_id}"]["GET"].validate_response(status)
        if status.json()["status"] in {"succeeded", "failed", "cancelled"}:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    cancelled = httpx.delete(url, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    schema["/v1/jobs/{job_id}"]["DELETE"].validate_response(cancelled)


# ---------------------------------------------------------------------------------------------
# 3. A client generated from the contract works unmodified.


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """openapi-python-client output for api_schema/openapi.json, imported as ``xai_client``."""
    where = tmp_path_factory.mktemp("generated")
    bin_dir = Path(sys.executable).parent  # ruff for the generator's post hooks lives here too
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    # plots are images: the generated client returns their bytes
    config = where / "config.json"
    binary = "application/octet-stream"
    config.write_text(json.dumps({"content_type_overrides": dict.fromkeys(IMAGE_TYPES, binary)}))
    generated = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(OPENAPI),
            "--output-path",
            str(where / "xai_client"),
            "--meta",
            "none",
            "--fail-on-warning",
            "--config",
            str(config),
        ],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("xai_client")
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == "xai_client" or m.startswith("xai_client.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def api(generated_client: ModuleType, server: Any) -> Iterator[Any]:
    with generated_client.Client(
        base_url=server.url, timeout=httpx.Timeout(90), raise_on_unexpected_status=True
    ) as client:
        yield client


@pytest.mark.parametrize("model", MODELS)
def test_generated_client_predicts(
    generated_client: ModuleType, api: Any, applicant: dict[str, Any], model: str
) -> None:
    predict = importlib.import_module("xai_client.api.inference.predict")
    models = importlib.import_module("xai_client.models")

    body = models.PredictRequest.from_dict({"instances": [applicant]})
    response = predict.sync_detailed(name=model, client=api, body=body)

    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.PredictResponse)
    assert (result.model, len(result.predictions)) == (model, 1)
    prediction = result.predictions[0]
    assert prediction.label in {"good", "bad"}
    assert isinstance(prediction.probability, float)
    assert 0 <= prediction.probability <= 1
    assert isinstance(prediction.threshold, float)
    expected = "good" if prediction.probability >= prediction.threshold else "bad"
    assert prediction.label == expected


@pytest.mark.parametrize("model", MODELS)
def test_generated_client_explains(
    generated_client: ModuleType, api: Any, applicant: dict[str, Any], model: str
) -> None:
    explain = importlib.import_module("xai_client.api.inference.explain")
    models = importlib.import_module("xai_client.models")

    body = models.ExplainRequest.from_dict(
        {"instances": [applicant], "methods": ["shap"], "wait": 60}
    )
    response = explain.sync_detailed(name=model, client=api, body=body)

    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.ExplainResponse)
    assert (result.model, len(result.results)) == (model, 1)
    shap = result.results[0].explanations.shap
    assert isinstance(shap, models.ShapExplanation)
    features = [a.feature for a in shap.attributions]
    assert len(features) == 20
    assert sorted(features) == sorted(applicant)  # each raw feature exactly once
    assert shap.evidence.additivity_error < 1e-6
    total = shap.base_value + math.fsum(a.contribution for a in shap.attributions)
    assert total == pytest.approx(shap.evidence.model_output, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# 4. The example payloads in api_schema/examples/ are valid and answered.


def test_every_example_file_has_a_target() -> None:
    assert {p.name for p in EXAMPLES.glob("*.json")} == set(EXAMPLE_TARGETS)


@pytest.mark.parametrize("filename", sorted(EXAMPLE_TARGETS))
def test_example_payload_is_answered(client: httpx.Client, filename: str) -> None:
    operation_id, model = EXAMPLE_TARGETS[filename]
    document = contract()
    operation = operations(document)[operation_id]
    payload = json.loads((EXAMPLES / filename).read_text(encoding="utf-8"))
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator(document, request_schema).validate(payload)

    response = client.post(operation["path"].format(name=model), json=payload)

    assert response.status_code == 200, response.text
    schema[operation["path"]][operation["method"].upper()].validate_response(response)


def demo_upload(model: str) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """A demo model's version id and its files as the multipart fields of register_model."""
    folder = next(p for p in (ROOT / "models" / model).iterdir() if p.is_dir())
    names = {
        "manifest": "manifest.yaml",
        "artifact": "model.skops",
        "reference": "reference.csv",
        "evaluation": "evaluation.csv",
    }
    return folder.name, {field: (n, (folder / n).read_bytes()) for field, n in names.items()}


@pytest.mark.parametrize("model", MODELS)
def test_registering_a_demo_model_again_keeps_the_contract(
    client: httpx.Client, model: str, untouched_repository_models: None
) -> None:
    version, files = demo_upload(model)

    response = client.post("/v1/models", files=files)
    response.request.read()  # the multipart body streamed; schemathesis looks at it

    assert response.status_code == 200, response.text  # same files: already registered
    schema["/v1/models"]["POST"].validate_response(response)
    registered = response.json()
    assert (registered["name"], registered["version"], registered["created"]) == (
        model,
        version,
        False,
    )


def test_registration_missing_a_file_the_manifest_names_keeps_the_contract(
    client: httpx.Client,
) -> None:
    _, files = demo_upload("german-credit")
    del files["evaluation"]

    response = client.post("/v1/models", files=files)
    response.request.read()  # the multipart body streamed; schemathesis looks at it

    assert response.status_code == 422, response.text
    schema["/v1/models"]["POST"].validate_response(response)
    assert [issue["loc"] for issue in response.json()["detail"]] == [["body", "evaluation"]]
