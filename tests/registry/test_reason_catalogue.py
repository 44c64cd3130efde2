"""The manifest's reason catalogue: statements per category (validated against the
feature's categories), one statement per code, cut points, the materiality threshold."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from service.errors import InvalidRequestError, Issue
from service.registry.manifest import DEFAULT_MIN_REASON_SHARE, parse_manifest
from tests.adverse.lenders import employment_manifest

STUDENT = {"categories": ["student"], "code": "ST01", "statement": "Student status"}
JOBLESS = {"categories": ["unemployed"], "code": "EM20", "statement": "No current employment"}
OTHERS = {"categories": ["employed", "self-employed"], "code": "EM10", "statement": "Type of job"}
FALLBACK = {"code": "EM10", "statement": "Type of job"}


def parsed(manifest: dict[str, Any]) -> Any:
    return parse_manifest(yaml.safe_dump(manifest, sort_keys=False))


def refused(manifest: dict[str, Any]) -> list[Issue]:
    with pytest.raises(InvalidRequestError) as caught:
        parsed(manifest)
    return caught.value.issues


def test_statements_per_category_with_a_fallback_or_covering_every_category() -> None:
    manifest = parsed(employment_manifest(reason_by_category=[STUDENT, JOBLESS], reason=FALLBACK))
    employment = manifest.feature("employment")
    assert [e.code for e in employment.reason_by_category or []] == ["ST01", "EM20"]
    assert {c.code for c in employment.reason_codes} == {"EM10", "ST01", "EM20"}
    covering = parsed(employment_manifest(reason_by_category=[STUDENT, JOBLESS, OTHERS]))
    assert covering.feature("employment").reason is None
    assert manifest.min_reason_share == DEFAULT_MIN_REASON_SHARE == 0.05


LOC = ("manifest", "features", 0, "reason_by_category")
CASES: dict[str, tuple[dict[str, Any], tuple[Any, ...], str]] = {
    "overlapping groups": (
        {"reason_by_category": [STUDENT, {**OTHERS, "categories": ["student", "employed"]}],
         "reason": FALLBACK},
        LOC,
        "'student' is in entries 0 and 1: they must not overlap",
    ),
    "unknown category": (
        {"reason_by_category": [{**STUDENT, "categories": ["pupil"]}], "reason": FALLBACK},
        LOC,
        "entry 0 names ['pupil'], not among the feature's categories",
    ),
    "uncovered categories without a fallback": (
        {"reason_by_category": [STUDENT, JOBLESS]},
        LOC,
        "categories ['employed', 'self-employed'] have no statement",
    ),
    "an empty group": (
        {"reason_by_category": [{**STUDENT, "categories": []}], "reason": FALLBACK},
        (*LOC, 0, "categories"),
        "at least 1 item",
    ),
    "a group without a statement": (
        {"reason_by_category": [{"categories": ["student"], "code": "ST01"}], "reason": FALLBACK},
        (*LOC, 0, "statement"),
        "Field required",
    ),
    "no reason at all": (
        {},
        ("manifest", "features", 0),
        "needs an adverse-action reason (code, statement) or reason_by_category",
    ),
    "one code, two statements": (
        {"reason_by_category": [STUDENT, {**JOBLESS, "code": "IN01"}], "reason": FALLBACK},
        ("manifest", "features"),
        "reason codes ['IN01'] have different statements",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_catalogue_is_refused_at_the_field(case: str) -> None:
    fields, loc, words = CASES[case]
    issues = refused(employment_manifest(**fields))
    assert any(i.loc == loc and words in i.msg for i in issues), issues


def _feature(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in manifest["features"] if f["name"] == name)


def test_statements_per_category_apply_to_categorical_and_ordinal_features_only() -> None:
    manifest = employment_manifest(reason={"code": "EM10", "statement": "Type of job"})
    numeric = copy.deepcopy(manifest)
    _feature(numeric, "income")["reason_by_category"] = [STUDENT]
    [issue] = refused(numeric)
    assert issue.loc == ("manifest", "features", 1, "reason_by_category")
    assert "applies to categorical and ordinal features" in issue.msg
    ordinal = copy.deepcopy(manifest)
    employment = _feature(ordinal, "employment")
    employment.update(
        type="ordinal",
        reason_if_lower={"code": "EM30", "statement": "Employment too short"},
        reason_by_category=[STUDENT],
    )
    [issue] = refused(ordinal)
    assert "use reason_by_category or reason_if_higher/lower, not both" in issue.msg
    employment.pop("reason_if_lower")
    assert parsed(ordinal).feature("employment").reason_by_category is not None
    protected = copy.deepcopy(manifest)
    _feature(protected, "employment").update(
        protected=True, mutable=False, reason=None, reason_by_category=[STUDENT]
    )
    assert any("protected feature is never a reason" in i.msg for i in refused(protected))


@pytest.mark.parametrize(
    ("points", "words"),
    [
        ([20, 10], "strictly increasing"),
        ([10, 10], "strictly increasing"),
        ([50, 250], "within the feature's range [0.0, 200.0]"),
        ([], "at least one cut point"),
    ],
)
def test_bad_cut_points_are_refused(points: list[float], words: str) -> None:
    manifest = employment_manifest(reason=FALLBACK)
    _feature(manifest, "income")["cut_points"] = points
    [issue] = refused(manifest)
    assert issue.loc == ("manifest", "features", 1, "cut_points") and words in issue.msg


def test_cut_points_are_for_numeric_features_and_kept_in_order() -> None:
    manifest = employment_manifest(reason=FALLBACK)
    _feature(manifest, "employment")["cut_points"] = [1.0]
    [issue] = refused(manifest)
    assert "cut_points apply to numeric features" in issue.msg
    _feature(manifest, "employment").pop("cut_points")
    _feature(manifest, "income")["cut_points"] = [25, 62.5]
    assert parsed(manifest).feature("income").cut_points == [25.0, 62.5]


@pytest.mark.parametrize(
    ("share", "kind"), [(-0.1, "greater_than_equal"), (1.5, "less_than_equal")]
)
def test_the_materiality_threshold_is_a_share(share: float, kind: str) -> None:
    manifest = {**employment_manifest(reason=FALLBACK), "min_reason_share": share}
    [issue] = refused(manifest)
    assert (issue.loc, issue.type) == (("manifest", "min_reason_share"), kind)
    assert parsed({**manifest, "min_reason_share": 0.2}).min_reason_share == 0.2
