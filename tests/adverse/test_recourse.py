"""Recourse flips the decision, keeps every constraint and addresses a stated reason; the
fairness probe matches a direct computation."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions
from service.registry.loaded import LoadedModel
from service.registry.manifest import Direction, FeatureType
from tests.adverse.conftest import PROTECTED


def assert_allowed(model: LoadedModel, change: dict[str, Any]) -> None:
    feature = model.manifest.feature(change["feature"])
    assert feature.mutable and not feature.protected and feature.name not in PROTECTED
    if feature.type is FeatureType.numeric:
        low, high = feature.range or (float("-inf"), float("inf"))
        assert low <= change["to"] <= high
        step = change["to"] - change["from"]
    else:
        assert change["to"] in (feature.categories or [])
        order = feature.categories or []
        step = order.index(change["to"]) - order.index(change["from"])
    if feature.direction is Direction.increase:
        assert step > 0
    elif feature.direction is Direction.decrease:
        assert step < 0


@pytest.mark.parametrize("name", ["german-credit", "german-credit-logit"])
def test_every_recourse_option_flips_the_denial_within_the_constraints(
    name: str,
    demo_models: dict[str, LoadedModel],
    all_decisions: dict[str, tuple[pd.DataFrame, list[dict[str, Any]]]],
) -> None:
    model = demo_models[name]
    frame, decisions = all_decisions[name]
    denied = [i for i, d in enumerate(decisions) if d["decision"] == "denied"][:6]
    engine = AdverseActionEngine(model, AdverseActionOptions())
    rows = frame.iloc[denied].reset_index(drop=True)
    results = engine.decide(rows, [7] * len(rows), [None] * len(rows))
    found = 0
    for i, result in enumerate(results):
        recourse = result["recourse"]
        codes = {r["code"] for r in result["reasons"]}
        assert result["evidence"]["recourse_validity"] == [True] * len(recourse["options"])
        for option in recourse["options"]:
            changed = rows.iloc[[i]].reset_index(drop=True).copy()
            for change in option["changes"]:
                assert_allowed(model, change)
                assert change["from"] == pytest.approx(changed.loc[0, change["feature"]]) or (
                    change["from"] == changed.loc[0, change["feature"]]
                )
                changed.loc[0, change["feature"]] = change["to"]
                assert change["text"].startswith(f"{change['feature']}: ")
                assert " → " in change["text"]
            score = float(model.predictor.probability(changed)[0])
            assert score >= model.manifest.decision_threshold
            assert score == pytest.approx(option["score"])
            # addresses at least one stated reason, and only stated ones
            assert option["addresses"] and set(option["addresses"]) <= codes
            found += 1
        if not recourse["options"]:
            assert recourse["note"]
    assert found >= len(results)


def test_recourse_says_so_when_nothing_is_found(
    demo_models: dict[str, LoadedModel],
    all_decisions: dict[str, tuple[pd.DataFrame, list[dict[str, Any]]]],
) -> None:
    model = demo_models["german-credit"]
    frame, decisions = all_decisions["german-credit"]
    lowest = min(range(len(decisions)), key=lambda i: decisions[i]["score"])
    options = AdverseActionOptions.model_validate({"recourse": {"time_budget": 0.01}})
    [result] = AdverseActionEngine(model, options).decide(
        frame.iloc[[lowest]].reset_index(drop=True), [1], [None]
    )
    assert result["decision"] == "denied"
    if not result["recourse"]["options"]:
        assert "no recourse was found within the search budget" in result["recourse"]["note"]
        assert result["evidence"]["recourse_validity"] == []


def test_fairness_probe_matches_changing_each_protected_feature_alone(
    demo_models: dict[str, LoadedModel],
    all_decisions: dict[str, tuple[pd.DataFrame, list[dict[str, Any]]]],
) -> None:
    model = demo_models["german-credit"]
    frame, decisions = all_decisions["german-credit"]
    threshold = model.manifest.decision_threshold
    checked = 0
    for i in range(40):
        applicant = frame.iloc[[i]].reset_index(drop=True)
        approved = decisions[i]["decision"] == "approved"
        for probe in decisions[i]["evidence"]["fairness_probe"]:
            feature = model.manifest.feature(probe["feature"])
            if feature.type is FeatureType.numeric:
                low, high = feature.range or (0, 0)
                values = [float(v) for v in range(int(low), int(high) + 1)]
            else:
                values = list(feature.categories or [])
            values = [v for v in values if v != applicant.loc[0, feature.name]]
            flips = []
            for value in values:
                changed = applicant.copy()
                changed.loc[0, feature.name] = value
                score = float(model.predictor.probability(changed)[0])
                if (score >= threshold) != approved:
                    flips.append(value)
            assert probe["values_tested"] == len(values)
            assert probe["values"] == flips
            assert probe["changes_decision"] == bool(flips)
            checked += bool(flips)
    assert checked > 0  # the probe does find decisions a protected feature alone changes
