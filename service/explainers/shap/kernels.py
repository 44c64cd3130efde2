"""Compiled kernels of the native TreeSHAP engine (numba, cached on disk).

Interventional TreeSHAP by leaves: for an applicant x and a background row r, a leaf is
reached by the hybrid (x on the coalition S, r elsewhere) iff every player on its path
whose splits x fails is outside S (set B) and every player whose splits r fails is in S
(set A = path players r fails). That game, 1[A in S, B out of S], has Shapley values
+(|A|-1)!|B|!/(|A|+|B|)! for players of A and -|A|!(|B|-1)!/(|A|+|B|)! for players of B.
r enters only through the set of path players whose splits it passes, so the background
is summarised once per leaf as a histogram of those sets, and an applicant costs the
same whatever the number of background rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ZERO_THRESHOLD = 1e-35


@njit(cache=True, inline="always")
def _side(x, node, kind, feature, threshold, nan_right, zero_missing, cat_start, cat_len,
          cat_table, beyond_right, negative_right, negative_below):  # fmt: skip
    value = x[feature[node]]
    if np.isnan(value):
        return nan_right[node]
    if kind[node] == 1:
        if value < negative_below[node]:
            return negative_right[node]
        code = np.int64(value) if value > 0 else np.int64(0)
        if code >= cat_len[node]:
            return beyond_right[node]
        return cat_table[cat_start[node] + code]
    if zero_missing[node] == 1 and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD:
        return nan_right[node]
    return np.uint8(0) if value <= threshold[node] else np.uint8(1)


@njit(cache=True)
def _sides(x, out, kind, feature, threshold, nan_right, zero_missing, cat_start, cat_len,
           cat_table, beyond_right, negative_right, negative_below):  # fmt: skip
    for node in range(kind.shape[0]):
        if kind[node] >= 0:
            out[node] = _side(x, node, kind, feature, threshold, nan_right, zero_missing,
                              cat_start, cat_len, cat_table, beyond_right, negative_right,
                              negative_below)  # fmt: skip


@njit(cache=True)
def predict(X, roots, left, right, value, kind, feature, threshold, nan_right,
            zero_missing, cat_start, cat_len, cat_table, beyond_right, negative_right,
            negative_below):  # fmt: skip
    """(sum of leaf values, sum of |leaf values|) per row."""
    n = X.shape[0]
    total = np.zeros(n)
    magnitude = np.zeros(n)
    for i in range(n):
        x = X[i]
        for t in range(roots.shape[0]):
            node = roots[t]
            while kind[node] >= 0:
                side = _side(x, node, kind, feature, threshold, nan_right, zero_missing,
                             cat_start, cat_len, cat_table, beyond_right, negative_right,
                             negative_below)  # fmt: skip
                node = right[node] if side == 1 else left[node]
            total[i] += value[node]
            magnitude[i] += abs(value[node])
    return total, magnitude


@njit(cache=True)
def passed_players(X, path_start, path_node, path_right, path_slot, kind, feature, threshold,
                   nan_right, zero_missing, cat_start, cat_len, cat_table, beyond_right,
                   negative_right, negative_below):  # fmt: skip
    """(rows, leaves) int64: bit k set iff the row passes every split of the leaf's k-th
    player on the path to it."""
    n, n_leaves = X.shape[0], path_start.shape[0] - 1
    out = np.empty((n, n_leaves), dtype=np.int64)
    sides = np.zeros(kind.shape[0], dtype=np.uint8)
    for i in range(n):
        _sides(X[i], sides, kind, feature, threshold, nan_right, zero_missing, cat_start,
               cat_len, cat_table, beyond_right, negative_right, negative_below)  # fmt: skip
        for leaf in range(n_leaves):
            failed = np.int64(0)
            for k in range(path_start[leaf], path_start[leaf + 1]):
                if sides[path_node[k]] != path_right[k]:
                    failed |= np.int64(1) << path_slot[k]
            out[i, leaf] = ~failed
    return out


@njit(cache=True)
def histogram(passed, player_start):
    """Per leaf, the distinct passed-player sets of the background rows and their counts
    (CSR: start, sets, counts); sets are masked to the leaf's players."""
    n, n_leaves = passed.shape
    start = np.zeros(n_leaves + 1, dtype=np.int64)
    sets = np.empty(n * n_leaves, dtype=np.int64)
    counts = np.empty(n * n_leaves, dtype=np.int64)
    used = 0
    for leaf in range(n_leaves):
        m = player_start[leaf + 1] - player_start[leaf]
        full = (np.int64(1) << m) - 1
        column = np.sort(passed[:, leaf] & full)
        k = 0
        while k < n:
            j = k
            while j < n and column[j] == column[k]:
                j += 1
            sets[used] = column[k]
            counts[used] = j - k
            used += 1
            k = j
        start[leaf + 1] = used
    return start, sets[:used].copy(), counts[:used].copy()


@njit(cache=True, inline="always")
def _popcount(v):
    count = 0
    while v:
        v &= v - 1
        count += 1
    return count


@njit(cache=True)
def interventional(X, n_players, leaf_value, path_start, path_node, path_right, path_slot,
                   player_start, players, hist_start, hist_sets, hist_weight, coef_a, coef_b,
                   kind, feature, threshold, nan_right, zero_missing, cat_start, cat_len,
                   cat_table, beyond_right, negative_right, negative_below):  # fmt: skip
    """Shapley values (rows, players) of the mean over the background of the hybrid game."""
    n, n_leaves = X.shape[0], leaf_value.shape[0]
    phi = np.zeros((n, n_players))
    sides = np.zeros(kind.shape[0], dtype=np.uint8)
    for i in range(n):
        _sides(X[i], sides, kind, feature, threshold, nan_right, zero_missing, cat_start,
               cat_len, cat_table, beyond_right, negative_right, negative_below)  # fmt: skip
        for leaf in range(n_leaves):
            failed = np.int64(0)
            for k in range(path_start[leaf], path_start[leaf + 1]):
                if sides[path_node[k]] != path_right[k]:
                    failed |= np.int64(1) << path_slot[k]
            m = player_start[leaf + 1] - player_start[leaf]
            full = (np.int64(1) << m) - 1
            b = _popcount(failed)
            v = leaf_value[leaf]
            first = player_start[leaf]
            toward_b = 0.0
            for h in range(hist_start[leaf], hist_start[leaf + 1]):
                passed = hist_sets[h]
                if passed & failed != failed:
                    continue  # the row fails a split x fails too: never reached
                only_r = full & ~passed
                a = _popcount(only_r)
                if a == 0 and b == 0:
                    continue
                w = v * hist_weight[h]
                if b > 0:
                    toward_b += w * coef_b[a, b]
                if a > 0:
                    gain = w * coef_a[a, b]
                    bits = only_r
                    while bits:
                        low = bits & -bits
                        phi[i, players[first + _popcount(low - 1)]] += gain
                        bits ^= low
            if b > 0 and toward_b != 0.0:
                bits = failed
                while bits:
                    low = bits & -bits
                    phi[i, players[first + _popcount(low - 1)]] -= toward_b
                    bits ^= low
    return phi


def coefficients(max_players: int) -> tuple[np.ndarray, np.ndarray]:
    """coef_a[a, b] = (a-1)! b! / (a+b)!, coef_b[a, b] = a! (b-1)! / (a+b)!."""
    from math import comb

    size = max_players + 1
    coef_a = np.zeros((size, size))
    coef_b = np.zeros((size, size))
    for a in range(size):
        for b in range(size - a):
            if a:
                coef_a[a, b] = 1.0 / (a * comb(a + b, a))
            if b:
                coef_b[a, b] = 1.0 / (b * comb(a + b, b))
    return coef_a, coef_b
