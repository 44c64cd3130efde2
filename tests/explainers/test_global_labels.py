"""Why permutation importance returned nulls: labels that are not the declared classes
were silently counted as the unfavourable class, so ROC AUC was undefined (NaN -> null).
Such labels are refused now, in the evaluation set and per request, with the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from service.errors import ConflictError, InvalidRequestError
from service.explainers.global_ import GlobalOptions, run_global
from service.explainers.global_.check import check_request
from service.explainers.global_.data import encode_labels
from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.manifest import parse_manifest
from service.registry.store import ModelStore
from tests.adverse.lenders import employment_manifest


def with_evaluation_labels(model: LoadedModel, root: Path, relabel: dict[str, str]) -> LoadedModel:
    """The same version with its evaluation labels renamed (as a lender's file might be)."""
    version = model.version
    manifest = yaml.safe_load(version.file("manifest.yaml").read_text())
    files = {name: version.file(name).read_bytes() for name in version.manifest.data_files()}
    evaluation = pd.read_csv(version.file("evaluation.csv"), dtype=str, keep_default_na=False)
    evaluation["creditability"] = evaluation["creditability"].replace(relabel)
    files["evaluation.csv"] = evaluation.to_csv(index=False).encode()
    registered, _ = ModelStore(root).register(yaml.safe_dump(manifest).encode(), files, "cli")
    return LoadedModel.load(registered)


def run_permutation(model: LoadedModel) -> dict:
    def shap(options: dict) -> ShapExplainer:
        return ShapExplainer(model, ShapOptions(**options))

    options = {"permutation_importance": {"n_repeats": 2}}
    return run_global(model, ["permutation_importance"], options, [], None, 3, shap)


def test_evaluation_labels_that_are_not_the_classes_are_refused_not_nulls(
    demo_models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    model = with_evaluation_labels(
        demo_models["german-credit-logit"], tmp_path, {"good": "1", "bad": "0"}
    )
    with pytest.raises(ConflictError) as caught:
        run_permutation(model)
    assert caught.value.status_code == 409
    message = caught.value.message
    assert "labels ['0', '1'] are not the declared classes ['bad', 'good']" in message


def test_an_evaluation_set_of_one_class_is_refused(
    demo_models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    model = with_evaluation_labels(demo_models["german-credit-logit"], tmp_path, {"bad": "good"})
    with pytest.raises(ConflictError, match="only the class 'good'"):
        run_permutation(model)


def test_matching_labels_still_give_finite_importances(
    demo_models: dict[str, LoadedModel],
) -> None:
    section = run_permutation(demo_models["german-credit-logit"])["permutation_importance"]
    assert section["baseline_score"] > 0.8
    assert all(isinstance(f["mean"], float) for f in section["features"])


def test_request_labels_must_be_the_classes_and_whole_numbers_name_them() -> None:
    raw = copy.deepcopy(employment_manifest(reason={"code": "EM10", "statement": "Job"}))
    raw.update(classes=["0", "1"], favourable_class="1")
    manifest = parse_manifest(yaml.safe_dump(raw))
    rows = [{"employment": "student", "income": 10.0, "debt": 1.0}] * 3
    methods = ["permutation_importance"]
    check_request(manifest, methods, GlobalOptions(), rows, [0.0, 1.0, "1"])  # JSON 0, 1, "1"
    with pytest.raises(InvalidRequestError) as caught:
        check_request(manifest, methods, GlobalOptions(), rows, [0.0, 1.0, 2.0])
    [issue] = caught.value.issues
    assert issue.loc == ("body", "labels", 2) and "one of the classes ['0', '1']" in issue.msg


def test_encoded_labels_refuse_an_unknown_class(demo_models: dict[str, LoadedModel]) -> None:
    model = demo_models["german-credit"]
    assert encode_labels(model, ["good", "bad", "good"]).tolist() == [1, 0, 1]
    with pytest.raises(InvalidRequestError) as caught:
        encode_labels(model, ["good", "Good"])
    assert caught.value.issues[0].loc == ("body", "labels", 1)
