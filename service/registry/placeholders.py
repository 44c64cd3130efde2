"""``TODO`` placeholders that ``manifest draft`` writes and registration refuses."""

from __future__ import annotations

import re
from typing import Any

from service.errors import Issue

PLACEHOLDER = re.compile(r"\s*TODO\b")  # as `manifest draft` writes them: "TODO: ..."


def placeholder_issues_in(
    document: Any, root: tuple[str | int, ...] = ("manifest",)
) -> list[Issue]:
    """Every text in a manifest document (parsed or not) that is still a placeholder."""
    issues: list[Issue] = []
    features = document.get("features") if isinstance(document, dict) else None

    def feature_name(index: object) -> str | None:
        if isinstance(features, list) and isinstance(index, int) and index < len(features):
            entry = features[index]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                return str(entry["name"])
        return None

    def walk(value: Any, loc: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*loc, key if isinstance(key, (str, int)) else str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*loc, index))
        elif isinstance(value, str) and PLACEHOLDER.match(value):
            name = feature_name(loc[1]) if loc[:1] == ("features",) and len(loc) > 2 else None
            if name is not None:
                owner = f"feature '{name}': {'.'.join(map(str, loc[2:]))}"
            else:
                owner = ".".join(map(str, loc))
            issues.append(
                Issue(
                    (*root, *loc),
                    f"{owner} is still a placeholder ({value!r}); write it before registering",
                    "placeholder",
                )
            )

    walk(document, ())
    return issues
