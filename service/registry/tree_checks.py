"""Structural checks of the tree arrays a skops file brings, before any code walks them.

scikit-learn's compiled predictors trust their node arrays: a child index past the end of
the array, a node pointing back up the tree, or a feature index past the input's width
makes ``predict`` read outside its memory (a segfault) or loop forever. skops rebuilds
those arrays from the file, so they are checked here, every node, whether or not any
reference row would reach it: children come after their parent and inside the array,
features inside the model's inputs, categorical splits inside their bitsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DEPTH = 50  # of the object graph searched for trees
BITSET_WORDS = 8  # 256 bits: one per binned category value
TREE = "sklearn.tree._tree.Tree"
HISTOGRAM_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


class MalformedTreeError(ValueError):
    """A tree's arrays would make its compiled predictor read outside its memory."""


def check_trees(model: object) -> int:
    """Check every scikit-learn tree reachable from ``model``; return how many there were."""
    checked = 0
    seen: set[int] = set()
    pending: list[tuple[Any, int, Any]] = [(model, 0, None)]
    while pending:
        value, depth, owner = pending.pop()
        if id(value) in seen or depth > MAX_DEPTH or value is None:
            continue
        seen.add(id(value))
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if kind == TREE:
            _check_tree(value, getattr(owner, "n_features_in_", None))
            checked += 1
        elif kind == HISTOGRAM_TREE:
            _check_predictor(value, owner)
            checked += 1
        elif isinstance(value, dict):
            pending.extend((v, depth + 1, owner) for v in value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend((v, depth + 1, owner) for v in value)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                pending.extend((v, depth + 1, owner) for v in value.ravel())
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            pending.extend((v, depth + 1, value) for v in vars(value).values())
    return checked


def _check_tree(tree: Any, n_inputs: int | None) -> None:
    count, capacity = int(tree.node_count), int(tree.capacity)
    if not 0 < count <= capacity:
        raise MalformedTreeError(f"a tree claims {count} nodes in room for {capacity}")
    n_features = int(tree.n_features)
    if n_inputs is not None and n_features != int(n_inputs):
        raise MalformedTreeError(f"a tree reads {n_features} features of a {n_inputs}-input model")
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    _check_nodes(left, right, left == -1, count, "tree")
    inner = left != -1
    if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
        raise MalformedTreeError(f"a tree splits on a feature outside its {n_features} inputs")


def _check_predictor(predictor: Any, owner: Any) -> None:
    nodes = predictor.nodes
    names = getattr(nodes.dtype, "names", None) or ()
    if not {"left", "right", "is_leaf", "feature_idx"} <= set(names) or len(nodes) == 0:
        raise MalformedTreeError("a histogram tree has no usable node array")
    leaf = nodes["is_leaf"].astype(bool)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    _check_nodes(left, right, leaf, len(nodes), "histogram tree")
    n_inputs = getattr(owner, "n_features_in_", None)
    feature = nodes["feature_idx"].astype(np.int64)[~leaf]
    if n_inputs is not None and np.any((feature < 0) | (feature >= int(n_inputs))):
        raise MalformedTreeError(f"a histogram tree splits on a feature outside its {n_inputs}")
    categorical = nodes["is_categorical"].astype(bool) & ~leaf
    if not categorical.any():
        return
    bitsets = np.asarray(predictor.raw_left_cat_bitsets)
    if bitsets.ndim != 2 or bitsets.shape[1] != BITSET_WORDS:
        raise MalformedTreeError("a histogram tree's category bitsets have the wrong shape")
    if np.any(nodes["bitset_idx"][categorical] >= len(bitsets)):
        raise MalformedTreeError("a categorical split points past its category bitsets")
    _check_known_categories(owner, nodes["feature_idx"][categorical].astype(np.int64))


def _check_known_categories(owner: Any, split_features: np.ndarray) -> None:
    """The estimator passes its bin mapper's known-category bitsets to the predictor."""
    mapper = getattr(owner, "_bin_mapper", None)
    is_categorical = getattr(mapper, "is_categorical_", None)
    if mapper is None or is_categorical is None:
        raise MalformedTreeError("categorical splits without the bin mapper that knows them")
    is_categorical = np.asarray(is_categorical, dtype=bool)
    if np.any(split_features >= len(is_categorical)) or not is_categorical[split_features].all():
        raise MalformedTreeError("a categorical split on a feature the model treats as numeric")
    known, index = mapper.make_known_categories_bitsets()
    if np.asarray(known).shape[1:] != (BITSET_WORDS,) or np.any(
        np.asarray(index)[split_features] >= len(known)
    ):
        raise MalformedTreeError("the model's known-category bitsets do not cover its splits")


def _check_nodes(
    left: np.ndarray, right: np.ndarray, leaf: np.ndarray, count: int, what: str
) -> None:
    """Inner nodes have both children inside the array and after themselves (so every
    walk ends at a leaf); the root exists."""
    index = np.arange(len(left))[:count]
    left, right, leaf = left[:count], right[:count], leaf[:count]
    inner = ~leaf
    bad = inner & ((left <= index) | (right <= index) | (left >= count) | (right >= count))
    if bad.any():
        node = int(np.flatnonzero(bad)[0])
        raise MalformedTreeError(
            f"a {what}'s node {node} points to children outside the tree or above itself"
        )
