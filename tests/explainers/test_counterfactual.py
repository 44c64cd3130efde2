"""Counterfactuals: every one returned reaches the desired class when re-scored by the
model, and keeps every recourse constraint of the manifest; the search is seeded and stops
within its time budget, even where DiCE itself would never return."""

from __future__ import annotations

import signal
import time
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from service.errors import InvalidRequestError
from service.explainers.counterfactual import (
    CounterfactualExplainer,
    CounterfactualOptions,
    _DiceModel,
)
from service.explainers.registry import METHODS, parse_options
from service.registry.loaded import LoadedModel
from service.registry.manifest import Direction, FeatureType
from service.worker import run_task
from tests.conftest import DEMO_MODELS, ROOT

OPTION = ("body", "options", "counterfactual")
BUDGET_MARGIN = 1.5  # seconds; generous for a loaded CI machine, tiny next to a hang


@pytest.fixture(scope="module")
def denied(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> dict[str, pd.DataFrame]:
    """The first 20 applicants each demo model denies, as typed frames."""
    out = {}
    for name, model in demo_models.items():
        frame = model.frame(applicants)
        probability = model.predictor.probability(frame)
        rows = np.flatnonzero(probability < model.manifest.decision_threshold)[:20]
        out[name] = frame.iloc[rows].reset_index(drop=True)
    return out


def apply(row: pd.Series, changes: list[dict[str, Any]]) -> dict[str, Any]:
    values = row.to_dict()
    for change in changes:
        values[change["feature"]] = change["to"]
    return values


def assert_keeps_constraints(
    model: LoadedModel,
    row: pd.Series,
    result: dict[str, Any],
    options: CounterfactualOptions,
) -> None:
    """Checked here from the manifest and the model alone, not with the explainer's code."""
    manifest = model.manifest
    evidence = result["evidence"]
    counterfactuals = result["counterfactuals"]
    assert evidence["returned"] == len(counterfactuals) <= options.count == evidence["requested"]
    assert (evidence["shortfall_reason"] is None) == (len(counterfactuals) == options.count)
    if not counterfactuals:
        return
    assert evidence["validity"] == 1.0
    allowed = set(options.features_to_vary or manifest.feature_names)
    for counterfactual in counterfactuals:
        assert counterfactual["changes"], "a counterfactual changes something"
        for change in counterfactual["changes"]:
            feature = manifest.feature(change["feature"])
            was, to = change["from"], change["to"]
            assert feature.mutable and not feature.protected, feature.name
            assert feature.name in allowed
            if feature.type is FeatureType.numeric:
                assert was == row[feature.name]
                assert to != was
                low, high = feature.range or (-np.inf, np.inf)
                if options.permitted_range and feature.name in options.permitted_range:
                    low, high = options.permitted_range[feature.name]
                assert low <= to <= high, (feature.name, to)
                if feature.integer:
                    assert isinstance(to, int), (feature.name, to)
                if feature.direction is Direction.increase:
                    assert to > was, (feature.name, was, to)
                if feature.direction is Direction.decrease:
                    assert to < was, (feature.name, was, to)
            else:
                categories = feature.categories or []
                assert was == row[feature.name] and to in categories and to != was
                if feature.direction is Direction.increase:
                    assert categories.index(to) > categories.index(was), feature.name
                if feature.direction is Direction.decrease:
                    assert categories.index(to) < categories.index(was), feature.name
    # re-scored here, on the applicant with the changes applied
    instances = [apply(row, c["changes"]) for c in counterfactuals]
    probability = model.predictor.probability(model.frame(instances))
    desired = result["desired_class"]
    favourable = desired == manifest.favourable_class
    for counterfactual, p in zip(counterfactuals, probability, strict=True):
        assert (p >= manifest.decision_threshold) == favourable
        assert counterfactual["label"] == desired
        assert counterfactual["probability"] == pytest.approx(float(p), abs=1e-12)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_counterfactuals_are_valid_and_keep_every_constraint(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame], name: str
) -> None:
    model, frame = demo_models[name], denied[name]
    options = CounterfactualOptions()
    results = CounterfactualExplainer(model, options).explain(frame, list(range(len(frame))))
    assert len(results) == len(frame) == 20
    for i, result in enumerate(results):
        assert_keeps_constraints(model, frame.iloc[i], result, options)
        assert result["desired_class"] == model.manifest.favourable_class
        evidence = result["evidence"]
        assert evidence["method"] == "random" and evidence["seed"] == i
        assert evidence["dropped"] >= 0
        assert "elapsed_seconds" not in evidence  # wall time would break byte-identical replays
        assert "protected_unchanged" in evidence["constraints_checked"]
    orjson.dumps(results)  # JSON-able as it is
    returned = sum(r["evidence"]["returned"] for r in results)
    assert returned >= 0.8 * 3 * len(frame), f"only {returned} counterfactuals for {name}"


def test_narrowed_features_and_ranges_are_respected(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit-logit"], denied["german-credit-logit"].iloc[:6]
    options = CounterfactualOptions(
        count=2,
        features_to_vary=["duration_in_month", "credit_amount", "present_employment_since"],
        permitted_range={"duration_in_month": (4, 12), "credit_amount": (250, 2500)},
    )
    results = CounterfactualExplainer(model, options).explain(frame, [0] * len(frame))
    for i, result in enumerate(results):
        assert_keeps_constraints(model, frame.iloc[i], result, options)
    assert sum(r["evidence"]["returned"] for r in results) > 0


def test_a_narrowed_search_shares_the_dice_data_and_finds_what_a_new_one_finds(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit"], denied["german-credit"].iloc[:3]
    features = ["credit_amount", "duration_in_month"]
    everything = CounterfactualExplainer(model, CounterfactualOptions(count=2))
    everything.explain(frame.iloc[:1], [4])  # its DiCE explainer has served a search
    narrowed = everything.varying(features)
    assert narrowed.dice_data is everything.dice_data
    assert narrowed.to_vary == ["duration_in_month", "credit_amount"]  # manifest order
    assert everything.options.features_to_vary is None  # the original is unchanged
    options = CounterfactualOptions(count=2, features_to_vary=features)
    built = CounterfactualExplainer(model, options).explain(frame, [8, 9, 10])
    assert orjson.dumps(narrowed.explain(frame, [8, 9, 10])) == orjson.dumps(built)
    for i, result in enumerate(built):
        assert_keeps_constraints(model, frame.iloc[i], result, options)


def test_genetic_counterfactuals_keep_every_constraint_and_are_seeded(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit"], denied["german-credit"].iloc[:2]
    options = CounterfactualOptions(method="genetic", count=2)
    first = CounterfactualExplainer(model, options).explain(frame, [5, 6])
    for i, result in enumerate(first):
        assert_keeps_constraints(model, frame.iloc[i], result, options)
        assert result["evidence"]["returned"] == 2
    again = CounterfactualExplainer(model, options).explain(frame, [5, 6])
    assert without_timing(first) == without_timing(again)


def test_towards_the_unfavourable_class(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    model = demo_models["german-credit-logit"]
    frame = model.frame(applicants[:40])
    approved = frame[model.predictor.probability(frame) >= model.manifest.decision_threshold]
    row = approved.iloc[[0]].reset_index(drop=True)
    options = CounterfactualOptions(desired_class="bad", count=2)
    [result] = CounterfactualExplainer(model, options).explain(row, [1])
    assert result["desired_class"] == "bad" and result["evidence"]["returned"] > 0
    assert_keeps_constraints(model, row.iloc[0], result, options)
    # an applicant the model already approves needs no counterfactual to be approved
    [result] = CounterfactualExplainer(model, CounterfactualOptions()).explain(row, [1])
    assert result["counterfactuals"] == []
    assert "already decides 'good'" in result["evidence"]["shortfall_reason"]


def without_timing(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for result in results:
        evidence = dict(result["evidence"])
        out.append({**result, "evidence": evidence})
    return out


def test_same_seed_same_counterfactuals(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit"], denied["german-credit"].iloc[:2]
    first = CounterfactualExplainer(model, CounterfactualOptions()).explain(frame, [11, 12])
    again = CounterfactualExplainer(model, CounterfactualOptions()).explain(frame, [11, 12])
    other = CounterfactualExplainer(model, CounterfactualOptions()).explain(frame, [21, 22])
    assert orjson.dumps(without_timing(first)) == orjson.dumps(without_timing(again))
    assert without_timing(first) != without_timing(other)
    # the global random state DiCE draws from is left as it was
    np.random.seed(3)
    expected = np.random.random()
    np.random.seed(3)
    CounterfactualExplainer(model, CounterfactualOptions()).explain(frame.iloc[:1], [1])
    assert np.random.random() == expected


def test_a_hanging_search_stops_within_its_budget_with_a_partial_result(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    """DiCE's genetic search draws random populations until enough reach the desired class:
    with only the telephone allowed to change, none ever does and DiCE never returns."""
    model, frame = demo_models["german-credit"], denied["german-credit"]
    lowest = frame.iloc[[int(np.argmin(model.predictor.probability(frame)))]]
    budget = 1.5
    options = CounterfactualOptions(
        method="genetic", features_to_vary=["telephone"], time_budget=budget
    )
    explainer = CounterfactualExplainer(model, options)

    def outer(signum: int, frame: Any) -> None:  # another user of SIGALRM
        raise AssertionError("the outer timer fired during the test")

    previous = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        started = time.perf_counter()
        [result] = explainer.explain(lowest.reset_index(drop=True), [0])
        elapsed = time.perf_counter() - started
        # the previous handler and what was left of its timer are given back
        assert signal.getsignal(signal.SIGALRM) is outer
        assert 55 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert budget <= elapsed < budget + BUDGET_MARGIN
    evidence = result["evidence"]
    assert result["counterfactuals"] == [] and evidence["returned"] == 0
    assert evidence["shortfall_reason"].startswith("time budget of 1.5 s reached")


def test_a_short_budget_returns_what_it_found_by_then(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit"], denied["german-credit"].iloc[:2]
    for budget in (0.05, 0.6):
        options = CounterfactualOptions(count=20, time_budget=budget)
        explainer = CounterfactualExplainer(model, options)  # reused after interruptions
        for i in range(len(frame)):
            started = time.perf_counter()
            [result] = explainer.explain(frame.iloc[[i]].reset_index(drop=True), [i])
            assert time.perf_counter() - started < budget + BUDGET_MARGIN
            evidence = result["evidence"]
            if evidence["returned"] < 20:
                assert evidence["shortfall_reason"].startswith(f"time budget of {budget:g} s")
            assert_keeps_constraints(model, frame.iloc[i], result, options)


def test_fewer_than_asked_say_why(
    demo_models: dict[str, LoadedModel], denied: dict[str, pd.DataFrame]
) -> None:
    model, frame = demo_models["german-credit"], denied["german-credit"]
    lowest = frame.iloc[[int(np.argmin(model.predictor.probability(frame)))]]
    lowest = lowest.reset_index(drop=True)
    # no telephone makes this applicant creditworthy
    options = CounterfactualOptions(features_to_vary=["telephone"])
    [result] = CounterfactualExplainer(model, options).explain(lowest, [0])
    assert result["counterfactuals"] == []
    assert "no further counterfactual reaching 'good'" in result["evidence"]["shortfall_reason"]
    # one categorical of four values offers at most three counterfactuals
    options = CounterfactualOptions(
        count=5, features_to_vary=["status_of_existing_checking_account"]
    )
    row = frame.iloc[[0]].reset_index(drop=True)
    [result] = CounterfactualExplainer(model, options).explain(row, [0])
    assert 0 < result["evidence"]["returned"] <= 3
    assert "no further counterfactual" in result["evidence"]["shortfall_reason"]
    assert_keeps_constraints(model, row.iloc[0], result, options)
    # kdtree only offers reference rows equal to the applicant on every fixed feature
    [result] = CounterfactualExplainer(model, CounterfactualOptions(method="kdtree")).explain(
        lowest, [0]
    )
    assert result["evidence"]["shortfall_reason"].startswith("kdtree only proposes")


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_dice_sees_the_models_decision(demo_models: dict[str, LoadedModel], name: str) -> None:
    """DiCE's 0.5 cut-off on the wrapper's scores is the manifest's decision threshold,
    whatever dtypes DiCE hands over (its own copy of the data: pandas categoricals, int32,
    float32; its random candidates: object columns)."""
    model = demo_models[name]
    explainer = CounterfactualExplainer(model, CounterfactualOptions())
    dice_data = explainer.dice_data.data_df[model.manifest.feature_names]
    typed = model.frame(dice_data.astype(object).to_dict("records"))
    probability = model.predictor.probability(typed)
    wrapper = _DiceModel(model)
    threshold = model.manifest.decision_threshold
    for frame in (dice_data, dice_data.astype(object), typed):
        scores = wrapper.predict_proba(frame)
        np.testing.assert_array_equal(scores[:, 1] >= 0.5, probability >= threshold)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("options", "loc", "words"),
    [
        ({"features_to_vary": ["income"]}, "features_to_vary", "unknown features ['income']"),
        ({"features_to_vary": ["age_in_years"]}, "features_to_vary", "age_in_years (protected)"),
        ({"features_to_vary": ["credit_history"]}, "features_to_vary", "(immutable)"),
        ({"desired_class": "maybe"}, "desired_class", "not a class of this model"),
        ({"permitted_range": {"income": [1, 2]}}, "permitted_range", "unknown feature"),
        ({"permitted_range": {"age_in_years": [30, 40]}}, "permitted_range", "never change"),
        ({"permitted_range": {"purpose": [0, 1]}}, "permitted_range", "ranges are numeric"),
        ({"permitted_range": {"duration_in_month": [0, 500]}}, "permitted_range", "within"),
    ],
)
def test_options_that_need_the_manifest_are_refused_naming_the_option(
    demo_models: dict[str, LoadedModel], options: dict[str, Any], loc: str, words: str
) -> None:
    model = demo_models["german-credit"]
    with pytest.raises(InvalidRequestError) as caught:
        CounterfactualExplainer(model, CounterfactualOptions.model_validate(options))
    [issue] = caught.value.issues
    assert issue.loc[:4] == (*OPTION, loc)
    assert words in issue.msg
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"count": 0}, ("count",)),
        ({"count": 21}, ("count",)),
        ({"time_budget": 0}, ("time_budget",)),
        ({"time_budget": 121}, ("time_budget",)),
        ({"method": "gradient"}, ("method",)),
        ({"features_to_vary": []}, ("features_to_vary",)),
        ({"permitted_range": {"credit_amount": [5, 1]}}, ("permitted_range",)),
        ({"seed": 1}, ("seed",)),
    ],
)
def test_malformed_options_are_refused_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError):
        CounterfactualOptions.model_validate(options)
    # as the worker parses them once the method is registered
    monkeypatch.setitem(METHODS, "counterfactual", CounterfactualExplainer)
    with pytest.raises(InvalidRequestError) as caught:
        parse_options("counterfactual", options)
    assert caught.value.issues[0].loc[: 3 + len(loc)] == (*OPTION, *loc)


def test_the_worker_runs_it_and_reports_bad_options_as_422(
    monkeypatch: pytest.MonkeyPatch, demo_models: dict[str, LoadedModel], applicant: dict
) -> None:
    monkeypatch.setitem(METHODS, "counterfactual", CounterfactualExplainer)
    version = demo_models["german-credit"].version
    spec: dict[str, Any] = {
        "kind": "explain",
        "models_dir": str(ROOT / "models"),
        "model": "german-credit",
        "version": version.version_id,
        "instances": [applicant],
        "methods": ["counterfactual"],
        "options": {"counterfactual": {"count": 2}},
        "seed": 7,
    }
    out = run_task(spec)  # type: ignore[arg-type]
    [result] = out["results"]
    explanation = result["explanations"]["counterfactual"]
    assert explanation["evidence"]["returned"] == 2
    assert all(c["label"] == "good" for c in explanation["counterfactuals"])
    spec["options"] = {"counterfactual": {"features_to_vary": ["foreign_worker"]}}
    error = run_task(spec)["error"]  # type: ignore[arg-type]
    assert error["status_code"] == 422
    assert error["issues"][0]["loc"] == [*OPTION, "features_to_vary"]
