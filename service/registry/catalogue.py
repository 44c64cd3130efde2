"""Rules of a feature's adverse-action catalogue and rule edges that a field alone
cannot express: per-category statements, consistent codes, cut points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol


class _CategoryEntry(Protocol):
    categories: list[str]
    code: str
    statement: str


class _Coded(Protocol):
    code: str
    statement: str


def category_reason_problem(
    entries: Sequence[_CategoryEntry], categories: Sequence[str] | None, has_fallback: bool
) -> str | None:
    """Why ``reason_by_category`` does not fit the feature's categories, or None: every
    category it names must exist, none may be named twice, and every category must be
    covered unless the feature's ``reason`` is the fallback."""
    if not categories:
        return None  # the missing categories are reported on their own field
    known = set(categories)
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        unknown = [c for c in entry.categories if c not in known]
        if unknown:
            return f"entry {i} names {unknown}, not among the feature's categories"
        for category in entry.categories:
            if category in seen:
                return f"'{category}' is in entries {seen[category]} and {i}: they must not overlap"
            seen[category] = i
    uncovered = [c for c in categories if c not in seen]
    if uncovered and not has_fallback:
        return (
            f"categories {uncovered} have no statement: cover every category or give the "
            "feature a 'reason' as the fallback"
        )
    return None


def code_conflicts(codes: Sequence[_Coded]) -> list[str]:
    """Codes given two different statements (a code is one statement everywhere)."""
    statements: dict[str, set[str]] = {}
    for entry in codes:
        statements.setdefault(entry.code, set()).add(entry.statement)
    return sorted(code for code, texts in statements.items() if len(texts) > 1)


def cut_points_problem(points: Sequence[float], bounds: tuple[float, float] | None) -> str | None:
    """Why ``cut_points`` are unusable interval edges, or None."""
    if not points:
        return "give at least one cut point (or leave cut_points out)"
    if not all(math.isfinite(p) for p in points):
        return "cut points must be finite numbers"
    if any(b <= a for a, b in zip(points, points[1:], strict=False)):
        return "cut points must be strictly increasing"
    if bounds is not None and not (bounds[0] <= points[0] and points[-1] <= bounds[1]):
        return f"cut points must lie within the feature's range {list(bounds)}"
    return None
