"""Manifest validation: the demo manifest is valid; each mutation is refused with an issue
located at the offending field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from service.errors import InvalidRequestError, Issue
from service.registry import manifest_text
from service.registry.manifest import (
    ArtifactFormat,
    FeatureType,
    Manifest,
    Task,
    parse_manifest,
)
from service.registry.manifest_text import MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_NODES

from .toy import DEMO_MANIFEST

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load(DEMO_MANIFEST.read_text())


def index_of(manifest: dict[str, Any], name: str) -> int:
    return next(i for i, f in enumerate(manifest["features"]) if f["name"] == name)


def refused(base: dict[str, Any], mutate: Mutation) -> list[Issue]:
    manifest = copy.deepcopy(base)
    mutate(manifest)
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(yaml.safe_dump(manifest, sort_keys=False))
    assert caught.value.status_code == 422
    return caught.value.issues


def test_the_demo_manifest_is_valid(base: dict[str, Any]) -> None:
    manifest = parse_manifest(DEMO_MANIFEST.read_bytes())
    assert manifest.name == "german-credit"
    assert manifest.task is Task.binary_classification
    assert manifest.classes == ["bad", "good"]
    assert (manifest.favourable_class, manifest.unfavourable_class) == ("good", "bad")
    assert manifest.decision_threshold == 0.5
    assert manifest.artifact.format is ArtifactFormat.skops and not manifest.artifact.trusted
    assert manifest.data_files() == ["model.skops", "reference.csv", "evaluation.csv"]
    assert len(manifest.features) == 20
    assert manifest.feature_names == [f["name"] for f in base["features"]]
    age = manifest.feature("age_in_years")
    assert (age.type, age.range, age.integer) == (FeatureType.numeric, (18.0, 100.0), True)
    assert age.protected and not age.mutable and age.reason is None
    assert manifest.feature("present_employment_since").type is FeatureType.ordinal
    assert manifest.metrics == {"holdout_auc": 0.838}


def test_json_text_gives_the_same_manifest(base: dict[str, Any]) -> None:
    assert parse_manifest(json.dumps(base)) == parse_manifest(DEMO_MANIFEST.read_bytes())


def test_the_parsed_manifest_is_frozen() -> None:
    manifest = parse_manifest(DEMO_MANIFEST.read_bytes())
    with pytest.raises(Exception, match="frozen"):
        manifest.name = "other"  # type: ignore[misc]


def _drop_categories(m: dict[str, Any]) -> None:
    del m["features"][index_of(m, "purpose")]["categories"]


# (mutation, expected loc after "manifest", words the message must contain)
FEATURE_CASES: dict[str, tuple[Mutation, str, str]] = {
    "categorical without categories": (
        _drop_categories,
        "purpose",
        "categorical feature needs a non-empty list of categories",
    ),
    "categorical with empty categories": (
        lambda m: m["features"][index_of(m, "housing")].update(categories=[]),
        "housing",
        "needs a non-empty list of categories",
    ),
    "ordinal without categories": (
        lambda m: m["features"][index_of(m, "present_employment_since")].pop("categories"),
        "present_employment_since",
        "ordinal feature needs a non-empty list",
    ),
    "repeated category": (
        lambda m: m["features"][index_of(m, "housing")].update(categories=["rent", "rent"]),
        "housing",
        "categories must be unique",
    ),
    "numeric with categories": (
        lambda m: m["features"][index_of(m, "credit_amount")].update(categories=["a"]),
        "credit_amount",
        "a numeric feature has a range, not categories",
    ),
    "categorical with a range": (
        lambda m: m["features"][index_of(m, "housing")].update(range=[0, 1]),
        "housing",
        "has categories, not range/integer",
    ),
    "categorical marked integer": (
        lambda m: m["features"][index_of(m, "housing")].update(integer=True),
        "housing",
        "has categories, not range/integer",
    ),
    "range min above max": (
        lambda m: m["features"][index_of(m, "credit_amount")].update(range=[500, 100]),
        "credit_amount",
        "min <= max",
    ),
    "infinite range": (
        lambda m: m["features"][index_of(m, "credit_amount")].update(range=[0, float("inf")]),
        "credit_amount",
        "two finite numbers",
    ),
    "direction on a categorical": (
        lambda m: m["features"][index_of(m, "housing")].update(direction="increase"),
        "housing",
        "direction applies to numeric and ordinal features only",
    ),
    "protected and mutable": (
        lambda m: m["features"][index_of(m, "age_in_years")].update(mutable=True),
        "age_in_years",
        "a protected feature must have mutable: false",
    ),
    "protected and mutable by default": (
        lambda m: m["features"][index_of(m, "foreign_worker")].pop("mutable"),
        "foreign_worker",
        "a protected feature must have mutable: false",
    ),
    "non-protected feature without a reason": (
        lambda m: m["features"][index_of(m, "job")].pop("reason"),
        "job",
        "needs an adverse-action reason",
    ),
}


@pytest.mark.parametrize("case", list(FEATURE_CASES))
def test_a_bad_feature_is_located_by_its_index(base: dict[str, Any], case: str) -> None:
    mutate, feature, words = FEATURE_CASES[case]
    issues = refused(base, mutate)
    assert len(issues) == 1
    assert issues[0].loc == ("manifest", "features", index_of(base, feature))
    assert words in issues[0].msg
    assert issues[0].type == "value_error"


FIELD_CASES: dict[str, tuple[Mutation, tuple[str | int, ...], str]] = {
    "threshold 0": (
        lambda m: m.update(decision_threshold=0),
        ("decision_threshold",),
        "greater_than",
    ),
    "threshold 1": (lambda m: m.update(decision_threshold=1), ("decision_threshold",), "less_than"),
    "threshold above 1": (
        lambda m: m.update(decision_threshold=1.5),
        ("decision_threshold",),
        "less_than",
    ),
    "negative threshold": (
        lambda m: m.update(decision_threshold=-0.1),
        ("decision_threshold",),
        "greater_than",
    ),
    "unknown top-level field": (lambda m: m.update(colour="red"), ("colour",), "extra_forbidden"),
    "unknown feature field": (
        lambda m: m["features"][2].update(weight=3),
        ("features", 2, "weight"),
        "extra_forbidden",
    ),
    "unknown artifact field": (
        lambda m: m["artifact"].update(sha="x"),
        ("artifact", "sha"),
        "extra_forbidden",
    ),
    "unknown feature type": (
        lambda m: m["features"][1].update(type="text"),
        ("features", 1, "type"),
        "enum",
    ),
    "unknown artifact format": (
        lambda m: m["artifact"].update(format="pickle"),
        ("artifact", "format"),
        "enum",
    ),
    "unknown task": (lambda m: m.update(task="ranking"), ("task",), "enum"),
    "schema version 2": (
        lambda m: m.update(schema_version=2),
        ("schema_version",),
        "literal_error",
    ),
    "name with capitals and spaces": (
        lambda m: m.update(name="German Credit"),
        ("name",),
        "string_pattern_mismatch",
    ),
    "artifact path escaping the folder": (
        lambda m: m["artifact"].update(path="../model.skops"),
        ("artifact", "path"),
        "string_pattern_mismatch",
    ),
    "artifact path in a subfolder": (
        lambda m: m["artifact"].update(path="sub/model.skops"),
        ("artifact", "path"),
        "string_pattern_mismatch",
    ),
    "hidden reference file": (
        lambda m: m["reference_data"].update(path=".reference.csv"),
        ("reference_data", "path"),
        "string_pattern_mismatch",
    ),
    "missing artifact": (lambda m: m.pop("artifact"), ("artifact",), "missing"),
    "no features": (lambda m: m.update(features=[]), ("features",), "too_short"),
    "metrics not numbers": (
        lambda m: m.update(metrics={"auc": "high"}),
        ("metrics", "auc"),
        "float_parsing",
    ),
}


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_a_bad_field_is_located_by_its_path(base: dict[str, Any], case: str) -> None:
    mutate, loc, kind = FIELD_CASES[case]
    issues = refused(base, mutate)
    assert [(i.loc, i.type) for i in issues] == [(("manifest", *loc), kind)]
    assert issues[0].msg


# Rules across fields: the message names the fields involved.
CROSS_CASES: dict[str, tuple[Mutation, str, str]] = {
    "favourable class not a class": (
        lambda m: m.update(favourable_class="great"),
        "favourable_class must be one of classes",
        "favourable_class",
    ),
    "duplicate feature names": (
        lambda m: m["features"].append(copy.deepcopy(m["features"][1])),
        "duplicate feature names: ['duration_in_month']",
        "features",
    ),
    "regression with classes": (
        lambda m: m.update(task="regression"),
        "regression takes no classes or favourable_class",
        "classes",
    ),
    "regression with a favourable class only": (
        lambda m: (m.update(task="regression"), m.pop("classes")),
        "regression takes no classes or favourable_class",
        "favourable_class",
    ),
    "three classes": (
        lambda m: m.update(classes=["bad", "good", "maybe"]),
        "binary_classification needs exactly two distinct classes",
        "classes",
    ),
    "the same class twice": (
        lambda m: m.update(classes=["good", "good"]),
        "binary_classification needs exactly two distinct classes",
        "classes",
    ),
    "classifier without classes": (
        lambda m: m.pop("classes"),
        "binary_classification needs exactly two distinct classes",
        "classes",
    ),
    "target is a feature": (
        lambda m: m.update(target="age_in_years"),
        "target must not also be a feature",
        "target",
    ),
    "positive class not a class": (
        lambda m: m["artifact"].update(positive_class="yes"),
        "positive_class 'yes' must be one of classes ['bad', 'good']",
        "artifact",
    ),
    "regression with a positive class": (
        lambda m: (
            m.update(task="regression"),
            m.pop("classes"),
            m.pop("favourable_class"),
            m["artifact"].update(positive_class="good"),
        ),
        "positive_class applies to classifiers; regression takes none",
        "artifact",
    ),
    "artifact named manifest.yaml": (
        lambda m: m["artifact"].update(path="manifest.yaml"),
        "must be distinct files",
        "artifact",
    ),
    "reference file is the artifact": (
        lambda m: m["reference_data"].update(path="model.skops"),
        "must be distinct files",
        "reference_data",
    ),
    "evaluation file is the reference": (
        lambda m: m["evaluation_data"].update(path="reference.csv"),
        "must be distinct files",
        "evaluation_data",
    ),
}


@pytest.mark.parametrize("case", list(CROSS_CASES))
def test_a_rule_across_fields_is_refused_with_its_reason(base: dict[str, Any], case: str) -> None:
    mutate, words, _ = CROSS_CASES[case]
    issues = refused(base, mutate)
    assert issues and all(i.loc[0] == "manifest" for i in issues)
    assert any(words in i.msg for i in issues), issues


@pytest.mark.parametrize(
    "case",
    [
        "favourable class not a class",
        "duplicate feature names",
        "regression with classes",
        "positive class not a class",
    ],
)
def test_a_rule_across_fields_is_located_at_the_field(base: dict[str, Any], case: str) -> None:
    mutate, words, field = CROSS_CASES[case]
    issues = refused(base, mutate)
    assert any(i.loc[:2] == ("manifest", field) and words in i.msg for i in issues), issues


def test_the_positive_class_defaults_to_classes_1(base: dict[str, Any]) -> None:
    assert parse_manifest(yaml.safe_dump(base)).positive_class == "good"
    manifest = copy.deepcopy(base)
    manifest["artifact"].update(format="xgboost-json", path="model.json", positive_class="bad")
    parsed = parse_manifest(yaml.safe_dump(manifest))
    assert (parsed.positive_class, parsed.artifact.is_booster) == ("bad", True)


def test_a_regression_manifest_without_classes_is_valid(base: dict[str, Any]) -> None:
    manifest = copy.deepcopy(base)
    manifest.update(task="regression", target="creditability")
    del manifest["classes"], manifest["favourable_class"]
    parsed = parse_manifest(yaml.safe_dump(manifest))
    assert parsed.task is Task.regression
    assert parsed.classes is None and parsed.unfavourable_class is None


def test_several_problems_are_reported_together(base: dict[str, Any]) -> None:
    def mutate(m: dict[str, Any]) -> None:
        m.update(decision_threshold=2, colour="red")
        del m["features"][0]["categories"]

    issues = refused(base, mutate)
    assert {i.loc for i in issues} == {
        ("manifest", "decision_threshold"),
        ("manifest", "colour"),
        ("manifest", "features", 0),
    }


@pytest.mark.parametrize(
    "text",
    [
        "name: [unclosed",
        "name: german-credit\n  task: : :\n",
        '{"name": "x",',
        "\tname: tab",
    ],
)
def test_text_that_is_not_yaml_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(text)
    (issue,) = caught.value.issues
    assert issue.loc == ("manifest",)
    assert issue.msg.startswith("not valid YAML/JSON:")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string", "42", "", "null"])
def test_yaml_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(text)
    assert [(i.loc, i.msg) for i in caught.value.issues] == [
        (("manifest",), "must be a mapping of manifest fields")
    ]


def test_yaml_tags_that_build_objects_are_refused() -> None:
    text = "!!python/object/apply:os.system ['echo pwned']"
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(text)
    assert caught.value.issues[0].msg.startswith("not valid YAML/JSON:")


def test_the_location_prefix_is_the_callers(base: dict[str, Any]) -> None:
    manifest = copy.deepcopy(base)
    manifest["decision_threshold"] = 7
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(yaml.safe_dump(manifest), loc=("body", "manifest"))
    assert caught.value.issues[0].loc == ("body", "manifest", "decision_threshold")
    assert "body.manifest.decision_threshold" in caught.value.message


def test_a_manifest_object_round_trips(base: dict[str, Any]) -> None:
    manifest = parse_manifest(yaml.safe_dump(base))
    again = Manifest.model_validate(manifest.model_dump(mode="json"))
    assert again == manifest


# --- bounds: an uploaded manifest is measured before it is built into objects
def _only_issue(text: str | bytes) -> Issue:
    with pytest.raises(InvalidRequestError) as caught:
        parse_manifest(text)
    (issue,) = caught.value.issues
    return issue


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_a_deeply_nested_manifest_is_refused_without_recursion(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    issue = _only_issue("name: " + opener * 900 + "1" + closer * 900)
    assert (issue.loc, issue.msg) == (("manifest",), f"is nested deeper than {MAX_DEPTH} levels")


def test_an_alias_bomb_is_refused_by_its_expanded_size() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    issue = _only_issue("\n".join(lines))  # 10**8 values in a few hundred bytes
    assert issue.msg == f"has more than {MAX_NODES} values once its aliases are expanded"


def test_a_manifest_over_the_size_limit_is_refused_unread() -> None:
    issue = _only_issue(b"name: x\n" + b"#" * MAX_MANIFEST_BYTES)
    assert issue.type == "too_long" and f"at most {MAX_MANIFEST_BYTES}" in issue.msg


def test_the_demo_manifests_are_far_within_the_bounds(base: dict[str, Any]) -> None:
    text = DEMO_MANIFEST.read_bytes()
    assert len(text) < MAX_MANIFEST_BYTES / 20
    assert parse_manifest(text).name == base["name"]


@pytest.mark.parametrize("loader", ["libyaml", "python"])
def test_an_escaped_lone_surrogate_is_refused(
    base: dict[str, Any], loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if loader == "python":  # the pure-Python parser decodes the escape; libyaml refuses it
        monkeypatch.setattr(manifest_text, "Loader", yaml.SafeLoader)
    manifest = copy.deepcopy(base)
    manifest["description"] = "@@"
    text = yaml.safe_dump(manifest).replace("description: '@@'", 'description: "\\udc80"')
    issue = _only_issue(text)
    assert issue.loc[0] == "manifest"
    if loader == "python":
        assert issue.loc == ("manifest", "description")
        assert issue.msg == "is not valid Unicode (a lone surrogate)"


@pytest.mark.parametrize("text", [b"name: \xed\xb2\x80", b"name: \xff", b"name: a\x00b"])
def test_bytes_that_are_not_utf8_text_are_refused(text: bytes) -> None:
    assert _only_issue(text).msg.startswith("not valid YAML/JSON:")
