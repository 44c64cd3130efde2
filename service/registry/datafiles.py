"""Check a version's data files before registration: columns, values and labels.

Every problem is located by file, row (counted from 1 after the header), column and reason;
a problem shared by many rows is reported once, at its first row, with the count.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from service.errors import InvalidRequestError, Issue
from service.registry.loaded import typed_frame
from service.registry.manifest import Feature, FeatureType, Manifest, Task
from service.registry.report import DataRole
from service.registry.schema import MAX_ISSUES

EXAMPLES = 3


class DataFileError(InvalidRequestError):
    """A data file does not fit the manifest; each issue names file, row, column, reason."""


@dataclass(frozen=True)
class CheckedData:
    """A data file that passed the checks: typed feature rows and the labels, if any."""

    role: DataRole
    file: str
    rows: pd.DataFrame
    labels: np.ndarray | None  # classifiers: 1 = favourable class; regression: the value


def check_data_file(path: Path, manifest: Manifest, role: DataRole) -> CheckedData:
    """Read ``path`` as the manifest's ``role`` data; raise :class:`DataFileError` listing
    every problem. The evaluation file must carry the manifest's ``target``."""
    name = path.name
    here: tuple[str | int, ...] = ("body", role)
    try:
        header = _header(path)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, csv.Error, UnicodeDecodeError) as exc:  # pandas' ParserError is one
        raise DataFileError([Issue(here, f"{name} is not a readable CSV file: {exc}")]) from exc
    issues = _column_issues(name, here, header, manifest, role)
    if not issues and raw.empty:
        issues.append(Issue(here, f"{name} has no rows", "too_short"))
    if issues:
        raise DataFileError(issues)
    columns: dict[str, list[object]] = {}
    for feature in manifest.features:
        values = raw[feature.name].to_numpy(dtype=object)
        checked, problems = _check_feature(feature, values)
        issues += _located(name, here, feature.name, problems)
        columns[feature.name] = checked
    labels = None
    if manifest.target is not None and manifest.target in raw.columns:
        labels, problems = _check_labels(manifest, raw[manifest.target].to_numpy(dtype=object))
        issues += _located(name, here, manifest.target, problems)
    if issues:
        raise DataFileError(issues[:MAX_ISSUES])
    return CheckedData(role, name, typed_frame(manifest, columns), labels)


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # as pandas: a BOM is no name
        return next(csv.reader(handle), [])


def _column_issues(
    name: str, here: tuple[str | int, ...], header: list[str], manifest: Manifest, role: DataRole
) -> list[Issue]:
    issues = []
    for column in sorted({c for c in header if header.count(c) > 1}):
        issues.append(Issue((*here, column), f"{name}: column '{column}' appears more than once"))
    present = set(header)
    for feature in manifest.feature_names:
        if feature not in present:
            issues.append(
                Issue((*here, feature), f"{name} has no column '{feature}' (a feature)", "missing")
            )
    target = manifest.target
    known = set(manifest.feature_names) | ({target} if target else set())
    for column in header:
        if column not in known:
            what = f"the target '{target}'" if target else "a target (the manifest names none)"
            issues.append(
                Issue(
                    (*here, column),
                    f"{name}: column '{column}' is neither a feature nor {what}; remove it, "
                    "or declare it in the manifest",
                    "extra_forbidden",
                )
            )
    if role == "evaluation" and target is not None and target not in present:
        close = difflib.get_close_matches(target, [c for c in header if c not in known], 1)
        hint = f"did you mean '{close[0]}'?" if close else f"columns: {header}"
        issues.append(
            Issue(
                (*here, target),
                f"{name} has no column '{target}', the manifest's target: evaluation rows need "
                f"their labels ({hint})",
                "missing",
            )
        )
    return issues


# A problem found in a column: (reason, error type, row indexes (0-based), the values there).
Problem = tuple[str, str, np.ndarray, np.ndarray]


def _located(
    name: str, here: tuple[str | int, ...], column: str, problems: list[Problem]
) -> list[Issue]:
    issues = []
    for reason, kind, rows, values in problems:
        first = int(rows[0]) + 1
        examples = ", ".join(repr(v) for v in dict.fromkeys(values.tolist()).keys())
        count = f" ({len(rows)} rows, first at row {first}; values {examples})"
        issues.append(
            Issue(
                (*here, first, column),
                f"{name} row {first}, column '{column}': {reason}"
                + (count if len(rows) > 1 else ""),
                kind,
            )
        )
    return issues


def _problem(mask: np.ndarray, values: np.ndarray, reason: str, kind: str) -> list[Problem]:
    rows = np.flatnonzero(mask)
    if not len(rows):
        return []
    shown = values[rows]
    unique = list(dict.fromkeys(shown.tolist()))[:EXAMPLES]
    return [(reason.format(value=repr(shown[0])), kind, rows, np.array(unique, dtype=object))]


def _check_feature(feature: Feature, values: np.ndarray) -> tuple[list[object], list[Problem]]:
    if feature.type is not FeatureType.numeric:
        allowed = feature.categories or []
        empty = values == ""
        unknown = ~np.isin(values, allowed) & ~empty
        listed = ", ".join(repr(c) for c in allowed)
        return list(values), [
            *_problem(empty, values, "missing value (empty cell)", "missing"),
            *_problem(unknown, values, f"{{value}} is not a declared category ({listed})", "enum"),
        ]
    numbers, problems = _numbers(values)
    parsed = np.isfinite(numbers)
    if feature.integer:
        problems += _problem(
            parsed & (numbers != np.round(numbers)),
            values,
            "{value} is not a whole number (the feature is declared integer: true)",
            "int_type",
        )
    if feature.range is not None:
        low, high = feature.range
        outside = parsed & ((numbers < low) | (numbers > high))
        problems += _problem(
            outside,
            values,
            f"{{value}} is outside the declared range [{low:g}, {high:g}]",
            "out_of_range",
        )
    return list(numbers), problems


def _numbers(values: np.ndarray) -> tuple[np.ndarray, list[Problem]]:
    """Values as floats (NaN where they are not numbers) and the problems of those cells."""
    numbers = np.full(len(values), np.nan)
    not_number = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        try:
            numbers[i] = float(value)
        except ValueError:
            not_number[i] = True
    empty = values == ""
    infinite = ~not_number & ~np.isfinite(numbers)
    return numbers, [
        *_problem(empty, values, "missing value (empty cell)", "missing"),
        *_problem(not_number & ~empty, values, "{value} is not a number", "type_error"),
        *_problem(infinite, values, "{value} is not a finite number", "finite_number"),
    ]


def _check_labels(manifest: Manifest, values: np.ndarray) -> tuple[np.ndarray, list[Problem]]:
    if manifest.task is Task.regression:
        numbers, problems = _numbers(values)
        return numbers, problems
    classes = manifest.classes or []
    unknown = ~np.isin(values, classes)
    listed = ", ".join(repr(c) for c in classes)
    problems = _problem(
        unknown, values, f"label {{value}} is not one of the declared classes ({listed})", "enum"
    )
    return (values == manifest.favourable_class).astype(int), problems
