"""Validate and canonicalise instances against a manifest's feature schema."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from service.errors import InvalidRequestError, Issue
from service.registry.manifest import Feature, FeatureType, Manifest

MAX_ISSUES = 50


def validate_instances(
    manifest: Manifest, instances: Sequence[Any], loc: tuple[str | int, ...] = ("body", "instances")
) -> list[dict[str, Any]]:
    """Check every instance; return them canonical (manifest order, numerics as float).

    Raises one 422 listing up to ``MAX_ISSUES`` problems, each located by instance index
    and field.
    """
    if not instances:
        raise InvalidRequestError([Issue(loc, "must contain at least one instance", "too_short")])
    issues: list[Issue] = []
    canonical: list[dict[str, Any]] = []
    accept = _Acceptor(manifest.features)
    for index, instance in enumerate(instances):
        row = accept(instance)
        if row is not None:
            canonical.append(row)
            continue
        row, problems = validate_instance(manifest, instance, (*loc, index))
        issues.extend(problems)
        if len(issues) >= MAX_ISSUES:
            break
        canonical.append(row)
    if issues:
        raise InvalidRequestError(issues[:MAX_ISSUES])
    return canonical


class _Acceptor:
    """The canonical row of an instance that :func:`validate_instance` would accept as it
    is (a dict of exactly the features, numbers as float or int, categories as str), in
    one pass; None for anything else, which the full check then explains."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.width = len(features)
        self.fields = [
            (
                f.name,
                f.type is FeatureType.numeric,
                f.range[0] if f.range is not None else -math.inf,
                f.range[1] if f.range is not None else math.inf,
                f.integer,
                frozenset(f.categories or ()),
            )
            for f in features
        ]

    def __call__(self, instance: Any) -> dict[str, Any] | None:
        if type(instance) is not dict or len(instance) != self.width:
            return None
        row: dict[str, Any] = {}
        for name, numeric, low, high, integer, categories in self.fields:
            value = instance.get(name, None)
            kind = type(value)
            if numeric:
                if kind is int:
                    if not -_EXACT_INT <= value <= _EXACT_INT:
                        return None  # the full check handles ints beyond exact floats
                    value = float(value)
                elif kind is not float:
                    return None
                if not (math.isfinite(value) and low <= value <= high):
                    return None
                if integer and not value.is_integer():
                    return None
            elif kind is not str or value not in categories:
                return None
            row[name] = value
        return row


_EXACT_INT = 2**53


def validate_instance(
    manifest: Manifest, instance: Any, loc: tuple[str | int, ...]
) -> tuple[dict[str, Any], list[Issue]]:
    if not isinstance(instance, dict):
        return {}, [Issue(loc, "must be an object of feature: value", "type_error")]
    issues: list[Issue] = []
    known = set(manifest.feature_names)
    for name in instance:
        if name not in known:
            issues.append(Issue((*loc, name), "unknown feature for this model", "extra_forbidden"))
    row: dict[str, Any] = {}
    for feature in manifest.features:
        if feature.name not in instance:
            issues.append(Issue((*loc, feature.name), "missing feature", "missing"))
            continue
        value, problem = check_value(feature, instance[feature.name])
        if problem:
            issues.append(Issue((*loc, feature.name), problem[0], problem[1]))
        else:
            row[feature.name] = value
    return row, issues


def check_value(feature: Feature, value: Any) -> tuple[Any, tuple[str, str] | None]:
    """The canonical value, or (message, error type) explaining why it is not allowed."""
    if feature.type is FeatureType.numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, (f"must be a number, got {_kind(value)}", "type_error")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        if not math.isfinite(number):
            return None, (
                "must be a finite number (NaN and infinity are not allowed)",
                "finite_number",
            )
        if feature.integer and not number.is_integer():
            return None, ("must be a whole number", "int_type")
        if feature.range is not None and not feature.range[0] <= number <= feature.range[1]:
            low, high = (_fmt(b) for b in feature.range)
            return None, (f"must be between {low} and {high}, got {_fmt(number)}", "out_of_range")
        return number, None
    if not isinstance(value, str):
        return None, (f"must be a string category, got {_kind(value)}", "type_error")
    if value not in (feature.categories or []):
        allowed = ", ".join(repr(c) for c in feature.categories or [])
        return None, (f"'{value}' is not an allowed category; allowed: {allowed}", "enum")
    return value, None


def _kind(value: Any) -> str:
    return {bool: "boolean", str: "string", type(None): "null", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(number)
