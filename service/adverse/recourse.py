"""Recourse: counterfactuals that flip a denial, change only what the applicant may change,
and address the stated reasons."""

from __future__ import annotations

from typing import Any

import pandas as pd

from service.adverse.options import RecourseOptions
from service.explainers.counterfactual import CounterfactualExplainer, CounterfactualOptions
from service.jobs.keys import row_seed
from service.registry.loaded import LoadedModel
from service.registry.manifest import Direction, FeatureType


class RecourseFinder:
    """One DiCE search per model version and options (built on first use); a search narrowed
    to an applicant's reasons shares its DiCE data instead of building its own."""

    def __init__(self, model: LoadedModel, options: RecourseOptions) -> None:
        self.model, self.options = model, options
        self._everything: CounterfactualExplainer | None = None

    def find(
        self, applicant: pd.DataFrame, reasons: list[dict[str, Any]], seed: int
    ) -> dict[str, Any]:
        """Options that flip the decision, those addressing a stated reason first; a second,
        narrower search over the reasons' own features when the first addresses none."""
        stated = {f["feature"]: r["code"] for r in reasons for f in r["features"]}
        found, notes = self._search(applicant, None, seed, stated)
        addressing = [o for o in found if o["addresses"]]
        reason_features = tuple(
            sorted(name for name in stated if self.model.manifest.feature(name).mutable)
        )
        if not addressing and reason_features:
            more, more_notes = self._search(applicant, reason_features, row_seed(seed, 1), stated)
            addressing, notes = [o for o in more if o["addresses"]], notes + more_notes
        chosen = addressing or found
        note = None
        if not chosen:
            note = "no recourse was found within the search budget" + _why(notes)
        elif not addressing:
            note = (
                "no recourse addressing a stated reason was found within the search budget; "
                "these options change other features"
            )
        return {"options": chosen[: self.options.count], "note": note}

    def _search(
        self,
        applicant: pd.DataFrame,
        features: tuple[str, ...] | None,
        seed: int,
        stated: dict[str, str],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Valid options of one DiCE search, each with the reason codes it addresses."""
        if self._everything is None:
            options = CounterfactualOptions(
                count=self.options.count,
                method=self.options.method,
                time_budget=self.options.time_budget,
            )
            self._everything = CounterfactualExplainer(self.model, options)
        explainer = self._everything if features is None else self._everything.varying(features)
        [result] = explainer.explain(applicant, [seed])
        options = [self._option(applicant, c["changes"], stated) for c in result["counterfactuals"]]
        shortfall = result["evidence"].get("shortfall_reason")
        return [o for o in options if o["valid"]], [shortfall] if shortfall else []

    def _option(
        self, applicant: pd.DataFrame, changes: list[dict[str, Any]], stated: dict[str, str]
    ) -> dict[str, Any]:
        """Re-score the changed applicant ourselves and re-check every change's constraint."""
        changed = applicant.copy()
        for change in changes:
            changed.loc[0, change["feature"]] = change["to"]
        score = float(self.model.predictor.probability(changed)[0])
        allowed = all(self._allowed(c) for c in changes)
        return {
            "changes": [{**c, "text": plain_change(c)} for c in changes],
            "text": "; ".join(plain_change(c) for c in changes),
            "score": score,
            "valid": allowed and score >= self.model.manifest.decision_threshold,
            "addresses": sorted({stated[c["feature"]] for c in changes if c["feature"] in stated}),
        }

    def _allowed(self, change: dict[str, Any]) -> bool:
        feature = self.model.manifest.feature(change["feature"])
        if feature.protected or not feature.mutable:
            return False
        if feature.direction is Direction.any:
            return True
        if feature.type is FeatureType.numeric:
            step = float(change["to"]) - float(change["from"])
        else:
            assert feature.categories is not None
            step = feature.categories.index(change["to"]) - feature.categories.index(change["from"])
        return step > 0 if feature.direction is Direction.increase else step < 0


def plain_change(change: dict[str, Any]) -> str:
    """``credit_amount: 7,500 → 4,000``."""
    return f"{change['feature']}: {plain(change['from'])} → {plain(change['to'])}"


def plain(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return f"{number:,.0f}" if number.is_integer() else f"{number:,.2f}"
    return str(value)


def _why(notes: list[str]) -> str:
    return f" ({'; '.join(dict.fromkeys(notes))})" if notes else ""
