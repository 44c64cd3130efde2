"""Compiled kernels of exact enumeration over a tree ensemble (numba, cached on disk), for
output spaces that are a link of the trees' sum (few players, every coalition)."""

from __future__ import annotations

import numpy as np
from numba import njit

from service.explainers.shap.kernels import _popcount, _sides


@njit(cache=True)
def to_global(passed, player_start, players):
    """Passed-player sets with each leaf's local bits moved to the players' own bits."""
    n, n_leaves = passed.shape
    out = np.zeros((n, n_leaves), dtype=np.int64)
    for leaf in range(n_leaves):
        first = player_start[leaf]
        m = player_start[leaf + 1] - first
        for k in range(m):
            bit = np.int64(1) << players[first + k]
            for i in range(n):
                if (passed[i, leaf] >> k) & 1:
                    out[i, leaf] |= bit
    return out


@njit(cache=True, inline="always")
def _link(z, link):
    if link == 1:  # log-odds -> probability
        if z >= 0:
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z)
        return e / (1.0 + e)
    if link == 2:  # probability -> log-odds, clipped as the predictor clips
        p = min(max(z, 1e-15), 1.0 - 1e-15)
        return np.log(p / (1.0 - p))
    return z


@njit(cache=True)
def enumerate_coalitions(X, n_players, offset, link, leaf_value, path_start, path_node,
                         path_right, path_slot, player_start, players, bg_passed, weights,
                         kind, feature, threshold, nan_right, zero_missing, cat_start,
                         cat_len, cat_table, beyond_right, negative_right,
                         negative_below):  # fmt: skip
    """Exact Shapley values of v(S) = mean over background rows r of link(trees(x_S, r)),
    over every coalition S (few players). Per r, the trees' sum on every coalition comes
    from each reachable leaf's inclusion-exclusion terms and one subset-sum transform."""
    n, n_leaves = X.shape[0], leaf_value.shape[0]
    size = 1 << n_players
    phi = np.zeros((n, n_players))
    sides = np.zeros(kind.shape[0], dtype=np.uint8)
    failed_global = np.zeros(n_leaves, dtype=np.int64)
    path_players = np.zeros(n_leaves, dtype=np.int64)
    mobius = np.zeros(size)
    value = np.zeros(size)
    for leaf in range(n_leaves):
        for k in range(player_start[leaf], player_start[leaf + 1]):
            path_players[leaf] |= np.int64(1) << players[k]
    for i in range(n):
        _sides(X[i], sides, kind, feature, threshold, nan_right, zero_missing, cat_start,
               cat_len, cat_table, beyond_right, negative_right, negative_below)  # fmt: skip
        for leaf in range(n_leaves):
            failed = np.int64(0)
            first = player_start[leaf]
            for k in range(path_start[leaf], path_start[leaf + 1]):
                if sides[path_node[k]] != path_right[k]:
                    failed |= np.int64(1) << players[first + path_slot[k]]
            failed_global[leaf] = failed
        value[:] = 0.0
        for r in range(bg_passed.shape[0]):
            mobius[:] = 0.0
            for leaf in range(n_leaves):
                b = failed_global[leaf]
                passed = bg_passed[r, leaf] & path_players[leaf]
                if b & ~passed:
                    continue
                a = path_players[leaf] & ~passed
                v = leaf_value[leaf]
                t = b
                while True:
                    mobius[a | t] += -v if _popcount(t) & 1 else v
                    if t == 0:
                        break
                    t = (t - 1) & b
            for j in range(n_players):
                bit = 1 << j
                for s in range(size):
                    if s & bit:
                        mobius[s] += mobius[s ^ bit]
            for s in range(size):
                value[s] += _link(offset + mobius[s], link)
        for s in range(size):
            value[s] /= bg_passed.shape[0]
        for j in range(n_players):
            bit = 1 << j
            total = 0.0
            for s in range(size):
                if not s & bit:
                    total += weights[_popcount(s)] * (value[s | bit] - value[s])
            phi[i, j] = total
    return phi
