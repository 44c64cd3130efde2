"""No input gets a 5xx: the odd inputs that once did, and a seeded fuzz over every route.

The fuzz draws, for every operation of the committed contract, bodies mutated from the
contract's examples (lone surrogates, NUL, numbers past the float range, NaN, deep
nesting, huge strings), raw bytes (truncated JSON and multipart, invalid UTF-8, garbage),
wrong content types and odd query values, against the shared demo server. Every answer
must be below 500, JSON with a ``detail`` for errors, and free of server paths.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import ROOT, ServerProcess

SEED = 20261202
CASES_PER_OPERATION = 14
OPENAPI = ROOT / "api_schema" / "openapi.json"
EXAMPLES = ROOT / "api_schema" / "examples"
EXAMPLE_FOR = {
    "/v1/models/{name}/predict": "predict.json",
    "/v1/models/{name}/explain": "explain.json",
    "/v1/models/{name}/adverse-action": "adverse-action.json",
    "/v1/models/{name}/adverse-action/batch": "adverse-action-batch.json",
    "/v1/models/{name}/global": "global.json",
}
# Raw JSON tokens a mutation may put where a value was (Python's json cannot write them).
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "1e-400"]
ODD_STRINGS = [
    "\udc80",  # json.dumps escapes it: a lone surrogate on the wire
    "\ud800",
    "a\u0000b",
    "\u0000",
    "\ufeff",
    "\u202eevil",
    "💳",
    "",
    " ",
    "../../etc/passwd",
    "%00",
    "x" * 100_000,
]
ODD_VALUES: list[Any] = [
    *ODD_STRINGS,
    None,
    True,
    -1,
    0,
    2**63,
    -(2**63) - 1,
    1e308,
    -0.0,
    [],
    {},
    [None] * 1000,
    {"\udc80": 1},
]


def _deep(depth: int, opener: str = "[") -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return ('{"a":' * depth + "1" + closer * depth).encode()
    return (opener * depth + closer * depth).encode()


RAW_BODIES = [
    b"",
    b"{",
    b'{"instances": [',
    b"\xff\xfe\x00{",
    b'{"instances": [{"housing": "\xed\xb2\x80"}]}',  # a surrogate as raw (invalid) UTF-8
    b'\xef\xbb\xbf{"instances": []}',
    b"null",
    b"[]",
    b'"text"',
    _deep(900),
    _deep(5000),
    _deep(900, "{"),
    b'{"instances": [' + b"[" * 1000 + b"]" * 1000 + b"]}",
    bytes(range(256)) * 4,
]
CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=zz",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    None,
]
ODD_QUERY: dict[str, list[str]] = {
    "version": ["\udc80", "%ED%B2%80", "../x", "0" * 64, "", "zz"],
    "format": ["png", "svg", "csv", "notices", "jsonl", "xml", "\u0000"],
    "index": ["-1", "1e400", "99999999999999999999", "0", "x"],
    "top": ["0", "51", "-5", "1.5"],
    "feature": ["\udc80", "duration_in_month", "housing", "nope", "x" * 300],
    "method": ["shap_importance", "permutation_importance", "x"],
    "job_id": ["\u0000", "x" * 201],
}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return [
        (path, method.upper(), operation)
        for path, item in sorted(document["paths"].items())
        for method, operation in sorted(item.items())
    ]


def _leaves(value: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from _leaves(item, (*at, index))


def _replace(document: Any, at: tuple, value: Any) -> Any:
    if not at:
        return value
    copied = copy.deepcopy(document)
    target = copied
    for part in at[:-1]:
        target = target[part]
    target[at[-1]] = value
    return copied


def _json_text(document: Any, raw: str | None) -> bytes:
    """JSON text; ``raw`` replaces the marker value by a token json cannot write."""
    text = json.dumps(document)  # ensure_ascii: a lone surrogate travels as \\udcxx
    if raw is not None:
        text = text.replace('"@@RAW@@"', raw)
    return text.encode()


def _multipart(rng: random.Random) -> tuple[bytes, str]:
    boundary = "fuzzboundary"
    parts = [
        (b"manifest", b"manifest.yaml", rng.choice([b"name: [", _deep(900), b"\xff\xfe"])),
        (b"file", b"applicants.csv", rng.choice([b"a,b\n1,2\n", b"\xed\xb2\x80,x\n", b""])),
        (b"options", None, rng.choice([b'{"max_reasons": 1e400}', b'"\\udc80"', b"{"])),
        (b"artifact", b"model.skops", rng.randbytes(64)),
    ]
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n'
        % (boundary.encode(), name, b'; filename="%s"' % filename if filename else b"", data)
        for name, filename, data in rng.sample(parts, rng.randint(1, len(parts)))
    )
    body += b"--%s--\r\n" % boundary.encode()
    if rng.random() < 0.5:
        body = body[: rng.randint(1, len(body) - 1)]  # truncated
    return body, f"multipart/form-data; boundary={boundary}"


def _path(template: str, rng: random.Random, jobs: list[str]) -> str:
    values = {
        "{name}": rng.choice(["german-credit", "german-credit-logit", "nope", "%ED%B2%80"]),
        "{job_id}": rng.choice([*jobs, "0" * 64, "%00", "x"]),
        "{receipt_id}": rng.choice(["0" * 64, "%ED%B2%80", "r"]),
        # never a real version: this route deletes
        "{version_id}": rng.choice(["ffffffffffffffff", "%ED%B2%80", "../german-credit"]),
    }
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def _case(
    path: str, method: str, operation: dict[str, Any], rng: random.Random, jobs: list[str]
) -> dict[str, Any]:
    query = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and rng.random() < 0.6:
            name = parameter["name"]
            query[name] = rng.choice(ODD_QUERY.get(name, ["\udc80"]))
    if "job_id" in query and jobs and rng.random() < 0.7:
        query["job_id"] = rng.choice(jobs)
    request: dict[str, Any] = {
        "method": method,
        "url": _path(path, rng, jobs),
        "params": {
            k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in query.items()
        },
    }
    if method not in ("POST", "PUT"):
        return request
    example_file = EXAMPLE_FOR.get(path)
    example = json.loads((EXAMPLES / example_file).read_text()) if example_file else {}
    if example and not path.endswith("/predict"):
        example["wait"] = 0  # accepted work is cancelled at the end, never waited for
    mode = rng.choice(["mutate", "mutate", "mutate", "raw", "content_type", "multipart"])
    content_type: str | None = "application/json"
    if mode == "mutate":
        at = rng.choice(list(_leaves(example)))
        raw = rng.choice(RAW_TOKENS) if rng.random() < 0.3 else None
        value = "@@RAW@@" if raw else rng.choice(ODD_VALUES)
        body = _json_text(_replace(example, at, value), raw)
    elif mode == "raw":
        body = rng.choice(RAW_BODIES)
    elif mode == "content_type":
        body, content_type = _json_text(example, None), rng.choice(CONTENT_TYPES)
    else:
        body, content_type = _multipart(rng)
    request["content"] = body
    request["headers"] = {"content-type": content_type} if content_type else {}
    return request


@pytest.fixture(scope="module")
def finished_jobs(client: httpx.Client, applicant: dict[str, Any]) -> list[str]:
    """A predict and an explain (shap) job, for the job and plot routes."""
    jobs = []
    for route, body in (
        ("predict", {"instances": [applicant]}),
        ("explain", {"instances": [applicant], "methods": ["shap"]}),
    ):
        response = client.post(f"/v1/models/german-credit/{route}", json=body)
        assert response.status_code == 200, response.text
        jobs.append(response.json()["job_id"])
    return jobs


def _assert_sound(response: httpx.Response, server: ServerProcess, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400 and response.status_code != 405:
        assert "detail" in response.json(), what
    models = str(Path(server.env["XAI_MODELS_DIR"]).resolve())
    for leak in (models, ".incoming/", "site-packages", "Traceback"):
        assert leak not in response.text, f"{what}: {leak!r} in {response.text[:500]}"


def test_no_route_answers_5xx_to_odd_input(
    server: ServerProcess, client: httpx.Client, finished_jobs: list[str]
) -> None:
    rng = random.Random(SEED)
    accepted: list[str] = []
    seen: dict[int, int] = {}
    try:
        for path, method, operation in _operations():
            for _ in range(CASES_PER_OPERATION):
                request = _case(path, method, operation, rng, finished_jobs)
                response = client.request(**request, timeout=60)
                what = f"{method} {request['url']} {request.get('content', b'')[:120]!r}"
                _assert_sound(response, server, what)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                if response.status_code == 202:
                    accepted.append(response.json()["job_id"])
    finally:
        for job_id in accepted:
            client.delete(f"/v1/jobs/{job_id}")
    # the fuzz reached past validation too, not only the first check of each route
    assert {200, 404, 422} <= set(seen), seen


@pytest.mark.parametrize(
    ("route", "body", "where"),
    [
        ("explain", {"instances": [{"housing": "\udc80"}]}, "instances.0.housing"),
        ("explain", {"methods": ["counterfactual"], "options": {"counterfactual": {
            "desired_class": "\udc80"}}}, "options.counterfactual.desired_class"),
        ("global", {"methods": ["pdp"], "options": {"pdp": {"features": ["\udc80"]}}},
         "options.pdp.features.0"),
        ("adverse-action", {"applicant": {}, "application_id": "A-\udc80"}, "application_id"),
        ("adverse-action/batch", {"applicants": [{"\udc80": 1}]}, "applicants.0"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_422_naming_where(
    client: httpx.Client, applicant: dict[str, Any], route: str, body: dict[str, Any], where: str
) -> None:
    if route == "explain" and "desired_class" in where:
        body = {**body, "instances": [applicant]}
    response = client.post(
        f"/v1/models/german-credit/{route}",
        content=json.dumps(body).encode(),  # the surrogate travels escaped: "\\udc80"
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    [issue] = response.json()["detail"]
    assert issue["type"] == "json_invalid"
    assert f"the string at {where} is not valid Unicode" in issue["msg"]


def test_a_surrogate_in_a_multipart_options_field_is_422(client: httpx.Client) -> None:
    frame = pd.read_csv(ROOT / "data" / "german_credit.csv", nrows=2).drop(columns="creditability")
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch",
        files={"file": ("applicants.csv", frame.to_csv(index=False).encode())},
        data={"options": '{"baseline": "\\udc80"}'},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "options"]


def test_invalid_utf8_and_deep_json_are_422(client: httpx.Client) -> None:
    for body in (b'{"instances": [{"housing": "\xed\xb2\x80"}]}', _deep(5000), b"\xff\xfe{}"):
        response = client.post(
            "/v1/models/german-credit/predict",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("options", "loc", "words"),
    [
        ({"counterfactual": {"permitted_range": {"nope": [1, 2]}}},
         ["body", "options", "counterfactual", "permitted_range", "nope"], "unknown feature"),
        ({"counterfactual": {"permitted_range": {"credit_amount": [5000, 250]}}},
         ["body", "options", "counterfactual", "permitted_range", "credit_amount"], "min <= max"),
        ({"counterfactual": {"features_to_vary": ["age_in_years"]}},
         ["body", "options", "counterfactual", "features_to_vary"], "protected"),
        ({"counterfactual": {"desired_class": "maybe"}},
         ["body", "options", "counterfactual", "desired_class"], "not a class"),
        ({"shap": {"algorithm": "exact"}},
         ["body", "options", "shap", "algorithm"], "at most 12 features"),
        ({"shap": {"algorithm": "linear"}},
         ["body", "options", "shap", "algorithm"], "'linear' SHAP is not available"),
    ],
)  # fmt: skip
def test_options_are_checked_before_a_job_is_accepted(
    client: httpx.Client,
    applicant: dict[str, Any],
    options: dict[str, Any],
    loc: list[Any],
    words: str,
) -> None:
    """``wait: 0`` answers 202 for any job that is queued: a 422 proves the check ran first."""
    methods = list(options)
    response = client.post(
        "/v1/models/german-credit/explain",
        json={"instances": [applicant], "methods": methods, "options": options, "wait": 0},
    )
    assert response.status_code == 422, response.text
    [issue] = response.json()["detail"]
    assert issue["loc"] == loc and words in issue["msg"], issue


def test_batch_issues_are_located_where_the_caller_put_the_value(
    client: httpx.Client, applicant: dict[str, Any]
) -> None:
    wrong = {**applicant, "housing": "castle"}
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch", json={"applicants": [applicant, wrong]}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "applicants", 1, "housing"]
    frame = pd.DataFrame([applicant, wrong])
    response = client.post(
        "/v1/models/german-credit/adverse-action/batch",
        files={"file": ("applicants.csv", frame.to_csv(index=False).encode())},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "file", 3, "housing"]
