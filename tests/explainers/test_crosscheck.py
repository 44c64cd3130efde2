"""Agreement across methods and the deletion (faithfulness) test."""

from __future__ import annotations

from typing import Any

import pytest

from service.explainers.crosscheck import FaithfulnessOptions, agreement, faithfulness
from service.explainers.shap import ShapExplainer, ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore
from tests.conftest import ROOT


def _shap(features: list[str]) -> dict[str, Any]:
    return {
        "attributions": [
            {"feature": f, "contribution": 1.0 / (i + 1)} for i, f in enumerate(features)
        ]
    }


def test_agreement_reports_overlap_and_disagreement() -> None:
    per_method = {
        "shap": _shap(["a", "b", "c", "d"]),
        "lime": {
            "weights": [
                {"feature": "b", "weight": -0.9},
                {"feature": "a", "weight": 0.5},
                {"feature": "e", "weight": 0.4},
                {"feature": "a", "weight": 0.1},
            ]
        },
        "anchor": {"rule": [{"feature": "a"}, {"feature": "e"}]},
    }
    block = agreement(per_method, k=3)
    assert block is not None
    assert block["top_features"] == {
        "shap": ["a", "b", "c"],
        "lime": ["b", "a", "e"],
        "anchor": ["a", "e"],
    }
    shap_lime = next(p for p in block["pairs"] if p["methods"] == ["lime", "shap"])
    assert shap_lime["jaccard"] == pytest.approx(2 / 4)
    assert shap_lime["only_first"] == ["e"] and shap_lime["only_second"] == ["c"]
    assert block["agreed"] == ["a"] and block["disputed"] == ["b", "c", "e"]


def test_agreement_needs_two_ranking_methods() -> None:
    assert agreement({"shap": _shap(["a"])}, k=3) is None


def test_deletion_test_finds_tree_shap_informative(applicants: list[dict[str, Any]]) -> None:
    store = ModelStore(ROOT / "models")
    store.scan()
    model = LoadedModel.load(store.get("german-credit"))
    explainer = ShapExplainer(model, ShapOptions())
    gaps = []
    for applicant in applicants[:10]:
        row = model.frame([applicant])
        result = explainer.explain(row, seeds=[0])[0]
        test = faithfulness(model, row, "shap", result, FaithfulnessOptions(k=5), seed=1)
        assert test is not None and test["k"] == 5 and len(test["drops"]) == 5
        gaps.append(test["gap"])
        # Reversing the ranking must do worse than the explanation's own order.
        reversed_result = {
            "attributions": [
                {**a, "contribution": -a["contribution"]} for a in result["attributions"]
            ],
            "output_space": "log_odds",
        }
        worse = faithfulness(model, row, "shap", reversed_result, FaithfulnessOptions(k=5), 1)
        assert worse is not None and worse["aopc"] < test["aopc"]
    assert min(gaps) > 0
