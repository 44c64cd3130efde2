"""Flat arrays of a :class:`TreeEnsemble` for the compiled kernels: every node of every
tree in one set of arrays, and every leaf's root-to-leaf path with the players (raw
features) it tests, numbered locally per leaf."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.explainers.shap.ensemble import TreeEnsemble, UnsupportedModel

MAX_PATH_PLAYERS = 62  # a leaf's players are bits of an int64


@dataclass(frozen=True)
class Layout:
    kind: np.ndarray  # int8: 0 numeric, 1 categorical, -1 leaf
    feature: np.ndarray
    threshold: np.ndarray
    nan_right: np.ndarray
    zero_missing: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    cat_start: np.ndarray
    cat_len: np.ndarray
    cat_table: np.ndarray
    beyond_right: np.ndarray
    negative_right: np.ndarray
    negative_below: np.ndarray
    roots: np.ndarray
    leaf_value: np.ndarray
    path_start: np.ndarray
    path_node: np.ndarray
    path_right: np.ndarray
    path_slot: np.ndarray
    player_start: np.ndarray
    players: np.ndarray
    n_players: int

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_value)

    def node_arrays(self) -> tuple[np.ndarray, ...]:
        """The arguments every kernel takes to route a row through the nodes."""
        return (
            self.kind, self.feature, self.threshold, self.nan_right, self.zero_missing,
            self.cat_start, self.cat_len, self.cat_table, self.beyond_right,
            self.negative_right, self.negative_below,
        )  # fmt: skip

    def path_arrays(self) -> tuple[np.ndarray, ...]:
        return (self.path_start, self.path_node, self.path_right, self.path_slot)


def build_layout(ensemble: TreeEnsemble, players: Sequence[int]) -> Layout:
    """``players[c]`` is the player (raw feature) that owns design column c."""
    owner = np.asarray(players, dtype=np.int64)
    nodes: dict[str, list[np.ndarray]] = {k: [] for k in NODE_FIELDS}
    cat_tables: list[np.ndarray] = []
    cat_offset = 0
    roots, base = [], 0
    leaf_value, path_start, path_node, path_right, path_slot = [], [0], [], [], []
    player_start, leaf_players = [0], []
    for tree in ensemble.trees:
        n = len(tree.left)
        kind = np.where(tree.left < 0, -1, 0).astype(np.int8)
        cat_start = np.zeros(n, dtype=np.int64)
        cat_len = np.zeros(n, dtype=np.int64)
        beyond = np.zeros(n, dtype=np.uint8)
        negative = np.zeros(n, dtype=np.uint8)
        for node, table in tree.categories.items():
            kind[node] = 1
            cat_start[node], cat_len[node] = cat_offset, len(table)
            beyond[node] = tree.beyond_right[node]
            negative[node] = tree.negative_right[node]
            cat_tables.append(table)
            cat_offset += len(table)
        internal = tree.left >= 0
        if np.any(tree.feature[internal] >= len(owner)):
            raise UnsupportedModel("a split uses a column the design matrix does not have")
        nodes["kind"].append(kind)
        nodes["feature"].append(tree.feature.astype(np.int64))
        nodes["threshold"].append(tree.threshold.astype(np.float64))
        nodes["nan_right"].append(tree.nan_right.astype(np.uint8))
        zero = tree.zero_missing if tree.zero_missing is not None else np.zeros(n, np.uint8)
        nodes["zero_missing"].append(zero.astype(np.uint8))
        nodes["left"].append(np.where(internal, tree.left + base, -1).astype(np.int64))
        nodes["right"].append(np.where(internal, tree.right + base, -1).astype(np.int64))
        nodes["value"].append(tree.value.astype(np.float64))
        nodes["cat_start"].append(cat_start)
        nodes["cat_len"].append(cat_len)
        nodes["beyond_right"].append(beyond)
        nodes["negative_right"].append(negative)
        nodes["negative_below"].append(np.full(n, tree.negative_below))
        roots.append(base)
        stack: list[tuple[int, list[tuple[int, int]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            if tree.left[node] < 0:
                slots: dict[int, int] = {}
                for step_node, _ in path:
                    slots.setdefault(int(owner[tree.feature[step_node]]), len(slots))
                if len(slots) > MAX_PATH_PLAYERS:
                    raise UnsupportedModel(
                        f"a path tests more than {MAX_PATH_PLAYERS} distinct features"
                    )
                for step_node, side in path:
                    path_node.append(step_node + base)
                    path_right.append(side)
                    path_slot.append(slots[int(owner[tree.feature[step_node]])])
                path_start.append(len(path_node))
                leaf_players.extend(slots)
                player_start.append(len(leaf_players))
                leaf_value.append(float(tree.value[node]))
                continue
            stack.append((int(tree.right[node]), [*path, (node, 1)]))
            stack.append((int(tree.left[node]), [*path, (node, 0)]))
        base += n
    joined = {k: np.concatenate(v) for k, v in nodes.items()}
    return Layout(
        **joined,
        cat_table=np.concatenate(cat_tables) if cat_tables else np.zeros(1, dtype=np.uint8),
        roots=np.asarray(roots, dtype=np.int64),
        leaf_value=np.asarray(leaf_value, dtype=np.float64),
        path_start=np.asarray(path_start, dtype=np.int64),
        path_node=np.asarray(path_node, dtype=np.int64),
        path_right=np.asarray(path_right, dtype=np.uint8),
        path_slot=np.asarray(path_slot, dtype=np.int64),
        player_start=np.asarray(player_start, dtype=np.int64),
        players=np.asarray(leaf_players, dtype=np.int64),
        n_players=int(owner.max()) + 1 if owner.size else 0,
    )


NODE_FIELDS = (
    "kind", "feature", "threshold", "nan_right", "zero_missing", "left", "right", "value",
    "cat_start", "cat_len", "beyond_right", "negative_right", "negative_below",
)  # fmt: skip
