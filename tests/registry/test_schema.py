"""Instances against a manifest's feature schema: every problem located and explained."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from service.errors import InvalidRequestError, Issue
from service.registry.manifest import Manifest, parse_manifest
from service.registry.schema import MAX_ISSUES, validate_instances

from .toy import DEMO_MANIFEST, manifest_dict

GOOD = {"income": 52, "debt_ratio": 0.75, "housing": "own"}
_DROP = object()


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return parse_manifest(yaml.safe_dump(manifest_dict("toy", "xgboost-json")))


def issues_of(manifest: Manifest, instances: list[Any]) -> list[Issue]:
    with pytest.raises(InvalidRequestError) as caught:
        validate_instances(manifest, instances)
    assert caught.value.status_code == 422
    return caught.value.issues


def one_issue(manifest: Manifest, **changes: Any) -> Issue:
    """The single issue of a good instance with ``changes`` (``_DROP``: key removed),
    placed second in a batch after a good one."""
    instance = {**GOOD, **changes}
    instance = {k: v for k, v in instance.items() if v is not _DROP}
    (issue,) = issues_of(manifest, [GOOD, instance])
    return issue


def test_valid_instances_come_back_canonical(manifest: Manifest) -> None:
    rows = validate_instances(
        manifest,
        [
            {"housing": "rent", "debt_ratio": 1, "income": 10.0},
            {"income": 0, "debt_ratio": 10, "housing": "free"},
            GOOD,
        ],
    )
    assert rows == [
        {"income": 10.0, "debt_ratio": 1.0, "housing": "rent"},
        {"income": 0.0, "debt_ratio": 10.0, "housing": "free"},
        {"income": 52.0, "debt_ratio": 0.75, "housing": "own"},
    ]
    assert [list(r) for r in rows] == [["income", "debt_ratio", "housing"]] * 3
    assert all(type(r["income"]) is float and type(r["debt_ratio"]) is float for r in rows)


def test_a_missing_feature(manifest: Manifest) -> None:
    issue = one_issue(manifest, debt_ratio=_DROP)
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "instances", 1, "debt_ratio"),
        "missing feature",
        "missing",
    )


def test_an_unknown_feature(manifest: Manifest) -> None:
    issue = one_issue(manifest, zip_code="10115")
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "instances", 1, "zip_code"),
        "unknown feature for this model",
        "extra_forbidden",
    )


@pytest.mark.parametrize(
    "value, kind",
    [
        (True, "boolean"),
        (False, "boolean"),
        ("52", "string"),
        (None, "null"),
        ([52], "array"),
        ({"v": 1}, "object"),
    ],
)
def test_a_numeric_of_the_wrong_type(manifest: Manifest, value: Any, kind: str) -> None:
    issue = one_issue(manifest, income=value)
    assert issue.loc == ("body", "instances", 1, "income")
    assert issue.msg == f"must be a number, got {kind}"
    assert issue.type == "type_error"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(manifest: Manifest, value: float) -> None:
    issue = one_issue(manifest, debt_ratio=value)
    assert issue.loc == ("body", "instances", 1, "debt_ratio")
    assert issue.msg == "must be a finite number (NaN and infinity are not allowed)"
    assert issue.type == "finite_number"


@pytest.mark.parametrize(
    "feature, value, message",
    [
        ("debt_ratio", 10.01, "must be between 0 and 10, got 10.01"),
        ("debt_ratio", -0.5, "must be between 0 and 10, got -0.5"),
        ("income", 1001, "must be between 0 and 1000, got 1001"),
        ("income", -1, "must be between 0 and 1000, got -1"),
    ],
)
def test_a_value_out_of_range(manifest: Manifest, feature: str, value: float, message: str) -> None:
    issue = one_issue(manifest, **{feature: value})
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "instances", 1, feature),
        message,
        "out_of_range",
    )


def test_range_bounds_are_inclusive(manifest: Manifest) -> None:
    rows = validate_instances(
        manifest,
        [{**GOOD, "income": 0, "debt_ratio": 10}, {**GOOD, "income": 1000, "debt_ratio": 0}],
    )
    assert [(r["income"], r["debt_ratio"]) for r in rows] == [(0.0, 10.0), (1000.0, 0.0)]


@pytest.mark.parametrize("value", [52.5, 0.001, 999.9])
def test_an_integer_feature_needs_a_whole_number(manifest: Manifest, value: float) -> None:
    issue = one_issue(manifest, income=value)
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "instances", 1, "income"),
        "must be a whole number",
        "int_type",
    )


def test_a_whole_float_is_a_valid_integer(manifest: Manifest) -> None:
    assert validate_instances(manifest, [{**GOOD, "income": 52.0}])[0]["income"] == 52.0


@pytest.mark.parametrize(
    "value, message, kind",
    [
        ("castle", "'castle' is not an allowed category; allowed: 'rent', 'own', 'free'", "enum"),
        ("Own", "'Own' is not an allowed category; allowed: 'rent', 'own', 'free'", "enum"),
        (" own", "' own' is not an allowed category; allowed: 'rent', 'own', 'free'", "enum"),
        (1, "must be a string category, got int", "type_error"),
        (True, "must be a string category, got boolean", "type_error"),
        (None, "must be a string category, got null", "type_error"),
    ],
)
def test_a_bad_category(manifest: Manifest, value: Any, message: str, kind: str) -> None:
    issue = one_issue(manifest, housing=value)
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "instances", 1, "housing"),
        message,
        kind,
    )


def test_an_ordinal_category_is_checked_like_a_categorical() -> None:
    demo = parse_manifest(DEMO_MANIFEST.read_bytes())
    feature = demo.feature("present_employment_since")
    instance = {
        f.name: (f.categories[0] if f.categories else (f.range[0] if f.range else 1))
        for f in demo.features
    }
    assert validate_instances(demo, [instance])[0] == instance
    (issue,) = issues_of(demo, [{**instance, feature.name: "forever"}])
    assert issue.loc == ("body", "instances", 0, feature.name)
    assert issue.msg.startswith("'forever' is not an allowed category; allowed: 'unemployed'")


def test_an_instance_that_is_not_an_object(manifest: Manifest) -> None:
    issues = issues_of(manifest, [GOOD, [52, 0.75, "own"], "x"])
    assert [(i.loc, i.msg, i.type) for i in issues] == [
        (("body", "instances", 1), "must be an object of feature: value", "type_error"),
        (("body", "instances", 2), "must be an object of feature: value", "type_error"),
    ]


def test_no_instances(manifest: Manifest) -> None:
    issues = issues_of(manifest, [])
    assert [(i.loc, i.type) for i in issues] == [(("body", "instances"), "too_short")]


def test_every_problem_of_every_instance_is_listed(manifest: Manifest) -> None:
    issues = issues_of(
        manifest,
        [
            {"income": 1.5, "housing": "castle", "extra": 1},
            GOOD,
            {"income": True, "debt_ratio": float("nan"), "housing": "own"},
        ],
    )
    assert [(i.loc, i.type) for i in issues] == [
        (("body", "instances", 0, "extra"), "extra_forbidden"),
        (("body", "instances", 0, "income"), "int_type"),
        (("body", "instances", 0, "debt_ratio"), "missing"),
        (("body", "instances", 0, "housing"), "enum"),
        (("body", "instances", 2, "income"), "type_error"),
        (("body", "instances", 2, "debt_ratio"), "finite_number"),
    ]


def test_at_most_max_issues_are_reported(manifest: Manifest) -> None:
    bad = {"income": "x", "debt_ratio": "y", "housing": 3}
    issues = issues_of(manifest, [bad] * 100)
    assert len(issues) == MAX_ISSUES
    assert issues[-1].loc[:3] == ("body", "instances", MAX_ISSUES // 3)


def test_the_location_prefix_is_the_callers(manifest: Manifest) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_instances(manifest, [{**GOOD, "income": "x"}], loc=("instances",))
    assert caught.value.issues[0].loc == ("instances", 0, "income")
    assert "instances.0.income: must be a number, got string" in caught.value.message


def test_an_integer_too_large_for_a_float_is_a_located_issue(manifest: Manifest) -> None:
    issue = one_issue(manifest, income=10**400)
    assert issue.loc == ("body", "instances", 1, "income")
    assert issue.type in ("finite_number", "out_of_range")


class _Text(str):
    """A str subclass: accepted as a category by the full check."""


def test_a_batch_gives_what_each_instance_gives_alone() -> None:
    """Seeded instances, good and broken in every way: a batch's rows (or its issues) are
    those of each instance checked on its own by the full check."""
    import random

    from service.registry.schema import validate_instance

    specs = manifest_dict("toy", "xgboost-json")
    unbounded = yaml.safe_load(yaml.safe_dump(specs))
    del unbounded["features"][1]["range"]  # a numeric without a range
    rng = random.Random(20261204)
    odd_values: list[Any] = [
        True, None, "52", [1], {"a": 1}, float("nan"), float("inf"), -float("inf"),
        10**400, 2**53 + 1, -(2**60), 1e308, -0.0, 52.5, 1000, 1000.0001, -1, "own",
        "OWN", _Text("own"), "", 3,
    ]  # fmt: skip
    for spec in (specs, unbounded):
        manifest = parse_manifest(yaml.safe_dump(spec))
        for _ in range(400):
            instance: Any = dict(GOOD)
            for _ in range(rng.randrange(3)):
                action = rng.randrange(4)
                name = rng.choice(list(GOOD))
                if action == 0:
                    instance[name] = rng.choice(odd_values)
                elif action == 1:
                    instance.pop(name, None)
                elif action == 2:
                    instance[rng.choice(["extra", "Income"])] = 1
                else:
                    instance = dict(reversed(list(instance.items())))
            if rng.random() < 0.02:
                instance = rng.choice([[GOOD], "row", None, 5])
            row, problems = validate_instance(manifest, instance, ("body", "instances", 0))
            if problems:
                assert issues_of(manifest, [instance]) == problems[:MAX_ISSUES]
            else:
                (canonical,) = validate_instances(manifest, [instance])
                assert canonical == row and list(canonical) == list(row)
                assert [type(v) for v in canonical.values()] == [type(v) for v in row.values()]
