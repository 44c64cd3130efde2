"""Only material reasons are stated: each carries at least min_reason_share (default 5 %)
of the total push toward denial, set per model in the manifest and per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

NO_RECOURSE = RecourseOptions(enabled=False)


def total_push(decision: dict[str, Any]) -> float:
    """The total push toward denial, recomputed from the response's own attributions."""
    return sum(
        -a["contribution"] for a in decision["attribution"]["attributions"] if a["contribution"] < 0
    )


def decide_one(model: LoadedModel, applicant: dict[str, Any], **options: Any) -> dict[str, Any]:
    engine = AdverseActionEngine(model, AdverseActionOptions(recourse=NO_RECOURSE, **options))
    [decision] = engine.decide(model.frame([applicant]), [0], [None])
    return decision


def test_small_contributions_are_no_longer_stated(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    decision = decide_one(demo_models["german-credit"], applicants[1])
    assert decision["decision"] == "denied"
    total = total_push(decision)
    materiality = decision["materiality"]
    assert materiality["min_reason_share"] == 0.05 and materiality["note"] is None
    assert materiality["total_toward_denial"] == pytest.approx(total, rel=1e-9)
    # three material reasons; the fourth candidate carries 3.3 % and is left out
    assert [r["code"] for r in decision["reasons"]] == ["LD02", "CA01", "SV01"]
    for reason in decision["reasons"]:
        assert reason["share"] == pytest.approx(reason["contribution"] / total, rel=1e-9)
        assert reason["share"] >= 0.05
    omitted = {o["code"]: o for o in materiality["omitted"]}
    assert omitted["CH01"]["share"] == pytest.approx(0.0331, abs=5e-4)
    assert omitted["DP01"]["contribution"] == pytest.approx(0.005, abs=5e-4)
    assert {o["why"] for o in omitted.values()} == {"immaterial"}
    assert all(o["share"] < 0.05 for o in omitted.values())

    # min_reason_share 0 per request: every denial-ward reason counts (the old behaviour)
    everything = decide_one(demo_models["german-credit"], applicants[1], min_reason_share=0)
    assert [r["code"] for r in everything["reasons"]] == ["LD02", "CA01", "SV01", "CH01"]
    beyond = [o for o in everything["materiality"]["omitted"] if o["why"] == "beyond max_reasons"]
    assert beyond and beyond[0]["code"] == "EM02"


@pytest.mark.parametrize("name", ["german-credit", "german-credit-logit"])
def test_every_stated_reason_is_material_and_every_material_one_is_stated(
    name: str, all_decisions: dict[str, tuple[pd.DataFrame, list[dict[str, Any]]]]
) -> None:
    _, decisions = all_decisions[name]
    fewer = 0
    for decision in (d for d in decisions if d["decision"] == "denied"):
        total = total_push(decision)
        reasons, materiality = decision["reasons"], decision["materiality"]
        shares = [r["share"] for r in reasons]
        assert shares == pytest.approx([r["contribution"] / total for r in reasons], rel=1e-9)
        assert min(shares) >= 0.05 and materiality["note"] is None
        material_left = [o for o in materiality["omitted"] if o["share"] >= 0.05]
        assert all(o["why"] == "beyond max_reasons" for o in material_left)
        assert len(reasons) == 4 or not material_left
        fewer += len(reasons) < 4
    if name == "german-credit":  # the tree model's pushes are concentrated
        assert fewer > 20


def test_when_no_reason_is_material_the_largest_is_stated_and_flagged(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]]
) -> None:
    decision = decide_one(demo_models["german-credit"], applicants[1], min_reason_share=0.9)
    [reason] = decision["reasons"]
    assert reason["code"] == "LD02" and reason["share"] < 0.9
    assert "no reason carries 90% of the push toward denial" in decision["materiality"]["note"]
    assert all(o["why"] == "immaterial" for o in decision["materiality"]["omitted"])


def test_the_manifest_sets_the_threshold_and_a_request_overrides_it(
    demo_models: dict[str, LoadedModel], applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    demo = demo_models["german-credit-logit"].version
    manifest = yaml.safe_load(demo.file("manifest.yaml").read_text())
    manifest["min_reason_share"] = 0.2
    files = {name: demo.file(name).read_bytes() for name in demo.manifest.data_files()}
    version, _ = ModelStore(tmp_path).register(yaml.safe_dump(manifest).encode(), files, "cli")
    strict = LoadedModel.load(version)
    assert strict.manifest.min_reason_share == 0.2

    default = decide_one(demo_models["german-credit-logit"], applicants[4])
    chosen = decide_one(strict, applicants[4])
    assert len(default["reasons"]) == 4
    assert chosen["materiality"]["min_reason_share"] == 0.2
    assert 1 <= len(chosen["reasons"]) < 4 and min(r["share"] for r in chosen["reasons"]) >= 0.2
    # the stated ones are the same top reasons, ranked alike
    assert [r["code"] for r in chosen["reasons"]] == [
        r["code"] for r in default["reasons"][: len(chosen["reasons"])]
    ]
    overridden = decide_one(strict, applicants[4], min_reason_share=0.05)
    assert overridden["reasons"] == default["reasons"]
