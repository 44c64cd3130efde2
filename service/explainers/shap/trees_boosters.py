"""XGBoost (its JSON model, also for UBJ files) and LightGBM (``dump_model()``) boosters
as a :class:`TreeEnsemble`, categorical splits and missing-value directions included."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from service.explainers.shap.ensemble import (
    FLOAT32_ROUNDOFF,
    FLOAT64_ROUNDOFF,
    LEFT,
    RIGHT,
    Tree,
    TreeEnsemble,
    UnsupportedModel,
    strict_to_inclusive,
)


def xgboost_ensemble(booster: Any, sign: float) -> TreeEnsemble:
    """``sign`` multiplies the booster's margin into the favourable class's."""
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    params = learner["learner_model_param"]
    if int(params.get("num_class", 0)) > 1 or int(params.get("num_target", 1)) > 1:
        raise UnsupportedModel("multi-class and multi-target boosters are not supported")
    gradient = learner["gradient_booster"]
    weights = None
    if gradient["name"] == "dart":
        weights, gradient = gradient["weight_drop"], gradient["gbtree"]
    elif gradient["name"] != "gbtree":
        raise UnsupportedModel(f"XGBoost booster '{gradient['name']}' has no trees")
    raw_trees = gradient["model"]["trees"]
    trees = []
    for i, raw in enumerate(raw_trees):
        weight = sign * (1.0 if weights is None else float(weights[i]))
        trees.append(_xgboost_tree(raw, weight))
    objective = learner["objective"]["name"]
    space = "log_odds" if objective.startswith(("binary:", "reg:logistic")) else "raw"
    return TreeEnsemble(trees, space, True, FLOAT32_ROUNDOFF, "XGBoost")


def _xgboost_tree(raw: dict[str, Any], weight: float) -> Tree:
    left = np.asarray(raw["left_children"], dtype=np.int32)
    if int(raw["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise UnsupportedModel("vector-leaf trees are not supported")
    out = Tree.empty(len(left))
    internal = left >= 0
    conditions = np.asarray(raw["split_conditions"], dtype=np.float32).astype(np.float64)
    out.left[:] = np.where(internal, left, -1)
    out.right[:] = np.where(internal, raw["right_children"], -1)
    out.feature[:] = np.where(internal, raw["split_indices"], -1)
    out.threshold[:] = np.where(internal, strict_to_inclusive(conditions), 0.0)  # x < c
    out.nan_right[:] = np.where(np.asarray(raw["default_left"]) != 0, LEFT, RIGHT)
    out.value[:] = np.where(internal, 0.0, conditions * weight)
    split_type = raw.get("split_type") or [0] * len(left)
    segments = raw.get("categories_segments", [])
    sizes = raw.get("categories_sizes", [])
    categories = raw.get("categories", [])
    for k, node in enumerate(raw.get("categories_nodes", [])):
        if not split_type[node]:
            continue
        chosen = np.asarray(categories[segments[k] : segments[k] + sizes[k]], dtype=np.int64)
        # XGBoost sends the chosen categories right, everything else (and invalid codes) left
        table = np.full(int(chosen.max()) + 1 if chosen.size else 1, LEFT, dtype=np.uint8)
        table[chosen] = RIGHT
        out.categories[int(node)] = table
        out.beyond_right[int(node)] = LEFT
        out.negative_right[int(node)] = LEFT
    return out


def lightgbm_ensemble(booster: Any, sign: float) -> TreeEnsemble:
    dump = booster.dump_model()
    if int(dump.get("num_class", 1)) != 1 or int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise UnsupportedModel("multi-class boosters are not supported")
    infos = dump["tree_info"]
    scale = sign / len(infos) if dump.get("average_output") else sign
    trees = [_lightgbm_tree(info["tree_structure"], scale) for info in infos]
    objective = str(dump.get("objective", ""))
    space = "log_odds" if objective.startswith(("binary", "cross_entropy")) else "raw"
    return TreeEnsemble(trees, space, False, FLOAT64_ROUNDOFF, "LightGBM")


def _lightgbm_tree(root: dict[str, Any], scale: float) -> Tree:
    nodes: list[dict[str, Any]] = []

    def visit(node: dict[str, Any]) -> int:
        index = len(nodes)
        nodes.append(node)
        if "split_index" in node:
            node["_left"] = visit(node["left_child"])
            node["_right"] = visit(node["right_child"])
        elif "leaf_coeff" in node or "leaf_features" in node:
            raise UnsupportedModel("LightGBM linear trees are not supported")
        return index

    visit(root)
    out = Tree.empty(len(nodes))
    out.zero_missing = np.zeros(len(nodes), dtype=np.uint8)
    out.negative_below = float(np.nextafter(-1.0, np.inf))  # static_cast<int>(x) < 0
    for i, node in enumerate(nodes):
        if "split_index" not in node:
            out.value[i] = float(node["leaf_value"]) * scale
            continue
        out.left[i], out.right[i] = node["_left"], node["_right"]
        out.feature[i] = int(node["split_feature"])
        default = LEFT if node.get("default_left") else RIGHT
        if node["decision_type"] == "==":
            chosen = np.asarray([int(c) for c in str(node["threshold"]).split("||")])
            table = np.full(int(chosen.max()) + 1, RIGHT, dtype=np.uint8)
            table[chosen] = LEFT  # LightGBM sends the listed categories left
            out.categories[i] = table
            out.beyond_right[i] = out.negative_right[i] = RIGHT
            out.nan_right[i] = RIGHT
            continue
        if node["decision_type"] != "<=":
            raise UnsupportedModel(f"LightGBM decision type {node['decision_type']!r}")
        threshold = float(node["threshold"])
        out.threshold[i] = threshold
        missing = node.get("missing_type", "None")
        if missing == "NaN":
            out.nan_right[i] = default
        elif missing == "Zero":  # NaN becomes 0, and 0 is missing
            out.nan_right[i] = default
            out.zero_missing[i] = 1
        else:  # NaN becomes 0 and is compared as 0
            out.nan_right[i] = LEFT if 0.0 <= threshold else RIGHT
    return out
