"""scikit-learn trees, forests, gradient boosting and histogram gradient boosting as a
:class:`TreeEnsemble` (binary classifiers and regressors)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from service.explainers.shap.ensemble import (
    FLOAT64_ROUNDOFF,
    LEFT,
    RIGHT,
    Tree,
    TreeEnsemble,
    UnsupportedModel,
)


def sklearn_ensemble(estimator: Any, sign: float) -> TreeEnsemble:
    """``sign`` = +1 when the favourable class is ``classes_[1]``, -1 when it is
    ``classes_[0]`` (ignored for regressors)."""
    from sklearn.base import is_classifier
    from sklearn.ensemble import (
        BaseEnsemble,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    classifier = is_classifier(estimator)
    if classifier and len(getattr(estimator, "classes_", [])) != 2:
        raise UnsupportedModel("only binary classifiers are supported")
    name = type(estimator).__name__
    if isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        return _hist_gradient_boosting(estimator, sign if classifier else 1.0)
    if isinstance(estimator, (GradientBoostingClassifier, GradientBoostingRegressor)):
        scale = estimator.learning_rate * (sign if classifier else 1.0)
        trees = [_cart(stage[0].tree_, scale, None) for stage in estimator.estimators_]
        space = "log_odds" if classifier else "raw"
        return TreeEnsemble(trees, space, True, FLOAT64_ROUNDOFF, name)
    if isinstance(estimator, BaseDecisionTree):
        members = [estimator]
    elif isinstance(estimator, BaseEnsemble) and all(
        isinstance(e, BaseDecisionTree) for e in estimator.estimators_
    ):
        members = list(estimator.estimators_)
        if getattr(estimator, "estimators_features_", None) is not None:  # bagging subsets
            raise UnsupportedModel(f"{name} trains trees on feature subsets")
    else:
        raise UnsupportedModel(f"{name} is not a tree model the engine reads")
    scale = 1.0 / len(members)
    if classifier:
        # P(favourable) = (1 - sign)/2 + sign * P(classes_[1]): the constant goes to the offset
        trees = [_cart(m.tree_, scale * sign, 1) for m in members]
        return TreeEnsemble(trees, "probability", True, FLOAT64_ROUNDOFF, name)
    return TreeEnsemble([_cart(m.tree_, scale, None) for m in members], "raw", True,
                        FLOAT64_ROUNDOFF, name)  # fmt: skip


def _cart(tree: Any, scale: float, class_index: int | None) -> Tree:
    if tree.n_outputs != 1:
        raise UnsupportedModel("multi-output trees are not supported")
    out = Tree.empty(tree.node_count)
    internal = tree.children_left >= 0
    out.left[:] = np.where(internal, tree.children_left, -1)
    out.right[:] = np.where(internal, tree.children_right, -1)
    out.feature[:] = np.where(internal, tree.feature, -1)
    out.threshold[:] = np.where(internal, tree.threshold, 0.0)
    missing_left = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count, dtype=np.uint8))
    out.nan_right[:] = np.where(np.asarray(missing_left) != 0, LEFT, RIGHT)
    values = np.asarray(tree.value, dtype=float)[:, 0, :]
    if class_index is None:
        leaf = values[:, 0]
    else:
        totals = values.sum(axis=1)
        leaf = values[:, class_index] / np.where(totals == 0, 1.0, totals)
    out.value[:] = np.where(internal, 0.0, leaf * scale)
    return out


def _hist_gradient_boosting(estimator: Any, sign: float) -> TreeEnsemble:
    if any(len(group) != 1 for group in estimator._predictors):
        raise UnsupportedModel("only one tree per iteration (binary or regression)")
    known, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
    trees = [_hist_tree(group[0], known, feature_map, sign) for group in estimator._predictors]
    space = "log_odds" if hasattr(estimator, "classes_") else "raw"
    ensemble = TreeEnsemble(trees, space, False, FLOAT64_ROUNDOFF, type(estimator).__name__)
    encoder = getattr(estimator, "_preprocessor", None)
    if encoder is None:
        return ensemble
    # categorical columns are ordinal-encoded (unknown -> NaN) and moved first
    categorical = np.asarray(estimator.is_categorical_, dtype=bool)
    columns = np.empty(categorical.size, dtype=np.int64)
    columns[encoder.output_indices_["encoder"]] = np.flatnonzero(categorical)
    columns[encoder.output_indices_["numerical"]] = np.flatnonzero(~categorical)
    return replace(ensemble, prepare=encoder.transform, columns=columns)


def _hist_tree(predictor: Any, known: np.ndarray, feature_map: np.ndarray, sign: float) -> Tree:
    nodes = predictor.nodes
    out = Tree.empty(len(nodes))
    leaf = nodes["is_leaf"].astype(bool)
    out.left[:] = np.where(leaf, -1, nodes["left"])
    out.right[:] = np.where(leaf, -1, nodes["right"])
    out.feature[:] = np.where(leaf, -1, nodes["feature_idx"])
    out.threshold[:] = np.where(leaf, 0.0, nodes["num_threshold"])
    out.nan_right[:] = np.where(nodes["missing_go_to_left"] != 0, LEFT, RIGHT)
    out.value[:] = np.where(leaf, nodes["value"] * sign, 0.0)
    bitsets = predictor.raw_left_cat_bitsets
    for node in np.flatnonzero(nodes["is_categorical"] & ~leaf):
        codes = np.arange(256)
        left = _in_bitset(bitsets[nodes["bitset_idx"][node]], codes)
        seen = _in_bitset(known[feature_map[nodes["feature_idx"][node]]], codes)
        missing = int(out.nan_right[node])
        # left set -> left; other known categories -> right; unknown ones -> as missing
        out.categories[int(node)] = np.where(left, LEFT, np.where(seen, RIGHT, missing)).astype(
            np.uint8
        )
        out.beyond_right[int(node)] = missing
        out.negative_right[int(node)] = missing
    return out


def _in_bitset(words: np.ndarray, codes: np.ndarray) -> np.ndarray:
    words = np.asarray(words, dtype=np.uint64)
    return ((words[codes // 32] >> (codes % 32).astype(np.uint64)) & np.uint64(1)).astype(bool)
