"""SHAP: exact algorithms where the model allows (tree, linear), a sampling estimator
otherwise; always per raw feature, interventional against the model's reference data."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from service.errors import invalid
from service.explainers.base import Explainer
from service.explainers.shap import candidates, shap_reference
from service.explainers.shap.attribution import Attributions
from service.explainers.shap.background import Background, background
from service.explainers.shap.checks import Check
from service.explainers.shap.exact import MAX_FEATURES as EXACT_MAX_FEATURES
from service.explainers.shap.exact import ExactShap
from service.explainers.shap.linear import LinearShap
from service.explainers.shap.options import ShapOptions
from service.explainers.shap.permutation import DEFAULT_BACKGROUND_ROWS, PermutationShap
from service.explainers.shap.tree import TreeShap
from service.explainers.shap.treeshap import NativeTreeShap
from service.registry.frame_memo import column_arrays
from service.registry.loaded import LoadedModel

Engine = NativeTreeShap | TreeShap | LinearShap | ExactShap | PermutationShap

EXACT_MAX_EVALUATIONS = 2**18  # model evaluations per explained row, default background
TREE_ENUMERATION_BUDGET = 2**22  # background rows x coalitions when the trees are enumerated


class ShapExplainer(Explainer):
    """Chooses the algorithm per (model, output space): the first exact engine that passes
    its self-check on the version's reference rows (linear, native TreeSHAP, shap's
    TreeSHAP, exact enumeration), else antithetic sampling; every step down is said in
    ``fallback_reason``."""

    method: ClassVar[str] = "shap"
    Options = ShapOptions
    options: ShapOptions

    def __init__(  # type: ignore[override]
        self, model: LoadedModel, options: ShapOptions, population: str = "reference rows"
    ) -> None:
        super().__init__(model, options)
        predictor = model.predictor
        self.space = _space(options.output, predictor.is_classifier)
        self.population = population
        self.fallback_reason: str | None = None
        self.implementation: str | None = None
        self.check: Check | None = None
        self.engine: Engine | None = None
        self.algorithm = "sampling"
        self._reasons: list[str] = []
        requested = options.algorithm
        whole = background(model.reference, options.background_rows, population)
        if predictor.linear_view() is not None and requested in ("auto", "linear"):
            self._try("linear", "linear", candidates.linear, whole)
        self._refuse_unless(requested, "linear")
        if (
            self.engine is None
            and predictor.tree_model() is not None
            and requested
            in (
                "auto",
                "tree",
            )
        ):
            self._try("tree", "native TreeSHAP engine", candidates.native, whole, "native")
            if self.engine is None:
                self._try("tree", "shap TreeExplainer", shap_reference.shap_tree, whole, "shap")
                if self.engine is not None:
                    self.fallback_reason = "; ".join(self._reasons) + "; shap's TreeSHAP used"
        self._refuse_unless(requested, "tree")
        if self.engine is None and requested in ("auto", "exact"):
            self._exact(requested)
        self._refuse_unless(requested, "exact")
        if self.engine is None:
            self.background = background(
                model.reference, options.background_rows or DEFAULT_BACKGROUND_ROWS, population
            )
            self.engine = PermutationShap(
                predictor, self.background.rows, self.space, options.permutations
            )
            if requested == "auto":
                self.fallback_reason = "; ".join(self._reasons) or None

    def _try(
        self, algorithm: str, label: str, build: Any, chosen: Background, impl: str | None = None
    ) -> None:
        try:
            self.engine, self.check = build(self.model, self.space, chosen.rows)
        except candidates.Unavailable as exc:
            reason = f"{label}: {exc}"
            if not any(r.split(": ", 1)[1] == str(exc) for r in self._reasons):
                self._reasons.append(reason)
            return
        self.algorithm, self.implementation, self.background = algorithm, impl, chosen

    def _exact(self, requested: str) -> None:
        n_features = len(self.model.manifest.features)
        reference = self.model.reference
        over_trees = n_features <= EXACT_MAX_FEATURES and candidates.tree_enumeration_available(
            self.model, self.space
        )
        budget = TREE_ENUMERATION_BUDGET if over_trees else EXACT_MAX_EVALUATIONS
        rows = self.options.background_rows or max(1, budget >> n_features)
        chosen = background(reference, rows, self.population)
        sampled = min(len(reference), self.options.background_rows or DEFAULT_BACKGROUND_ROWS)
        exact_cost = 2**n_features * len(chosen.rows)
        sampling_cost = self.options.permutations * (n_features + 1) * sampled
        tree_model = self.model.predictor.tree_model() is not None
        if requested == "auto" and not tree_model and exact_cost > sampling_cost:
            if n_features <= EXACT_MAX_FEATURES:
                self._reasons.append(
                    f"exact: enumeration costs {exact_cost:,} model evaluations per row, "
                    f"sampling {sampling_cost:,} (request algorithm 'exact' to enumerate)"
                )
            else:
                self._reasons.append(
                    f"exact: enumeration needs at most {EXACT_MAX_FEATURES} features; this "
                    f"model has {n_features}"
                )
            return
        self._try("exact", "exact", candidates.exact, chosen)

    def _refuse_unless(self, requested: str, name: str) -> None:
        if requested == name and self.engine is None:
            why = "; ".join(self._reasons) or f"the model offers no {name} view"
            raise invalid(
                ("body", "options", "shap", "algorithm"),
                f"'{name}' SHAP is not available for this model in {self.space} "
                f"space ({why}); use 'auto' or 'sampling'",
            )

    def summary(self) -> dict[str, Any]:
        """What was chosen and why, for registration reports and model descriptions."""
        return {
            "algorithm": self.algorithm,
            "fallback_reason": self.fallback_reason,
            "self_check_error": None if self.check is None else self.check.error,
            "self_check_tolerance": None if self.check is None else self.check.tolerance,
            "background": self.background.summary(),
        }

    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        engine = self.engine
        if isinstance(engine, PermutationShap):
            parts = [engine.explain_row(frame.iloc[[i]], seeds[i]) for i in range(len(frame))]
        else:
            assert engine is not None
            parts = [engine.explain(frame)]
        output = self.model.predictor.output(frame, self.space)
        model_output: list[float] = np.asarray(output, dtype=float).tolist()
        shown = [_json_values(np.asarray(column)) for column in column_arrays(frame)]
        results: list[dict[str, Any]] = []
        for part in parts:
            first = len(results)
            results.extend(self._format(shown, first, part, model_output, seeds))
        return results

    def _format(
        self,
        shown: list[list[Any]],
        first: int,
        part: Attributions,
        model_output: list[float],
        seeds: list[int],
    ) -> list[dict[str, Any]]:
        """One result per row of ``part``, whose first row is row ``first`` of the frame;
        attributions by decreasing magnitude (ties in feature order)."""
        values = np.ascontiguousarray(part.values, dtype=float)
        orders = np.argsort(-np.abs(values), axis=1, kind="stable").tolist()
        sums = values.sum(axis=1).tolist()  # row by row, as np.sum of each row adds them
        contributions = values.tolist()
        errors = None if part.std_error is None else np.asarray(part.std_error)
        error_rows = None if errors is None else errors.tolist()
        names = [feature.name for feature in self.model.manifest.features]
        sampled = isinstance(self.engine, PermutationShap)
        reference = {
            "rows": len(self.background.rows),
            "source": self.model.manifest.reference_data.description or "reference data",
            "selection": self.background.selection,
        }
        results = []
        for i, order in enumerate(orders):
            row = first + i
            shares = contributions[i]
            attributions = [
                {"feature": names[j], "value": shown[j][row], "contribution": shares[j]}
                for j in order
            ]
            if error_rows is not None:
                for item, j in zip(attributions, order, strict=True):
                    item["std_error"] = error_rows[i][j]
            fx = model_output[row]
            evidence: dict[str, Any] = {
                "algorithm": self.algorithm,
                "model_output": fx,
                "additivity_error": abs(fx - part.base_value - sums[i]),
            }
            if self.implementation is not None:
                evidence["implementation"] = self.implementation
            if self.fallback_reason:
                evidence["fallback_reason"] = self.fallback_reason
            if sampled:
                evidence["permutations"] = self.engine.permutations  # type: ignore[union-attr]
                evidence["seed"] = seeds[row]
                evidence["max_std_error"] = float(np.max(errors[i])) if errors is not None else None
            results.append(
                {
                    "base_value": part.base_value,
                    "output_space": self.space,
                    "perturbation": "interventional",
                    "reference": dict(reference),
                    "attributions": attributions,
                    "evidence": evidence,
                }
            )
        return results


def _space(requested: str, is_classifier: bool) -> str:
    if requested == "auto":
        return "log_odds" if is_classifier else "raw"
    if is_classifier and requested == "raw":
        return "log_odds"
    if not is_classifier and requested != "raw":
        raise invalid(
            ("body", "options", "shap", "output"),
            f"'{requested}' applies to classifiers; a regression model explains its raw output",
        )
    return requested


def _json_values(column: np.ndarray) -> list[Any]:
    """Each cell of a column as JSON shows it (:func:`_json_value`), a numeric column at
    once."""
    if column.dtype.kind in "fiu":
        return column.tolist()  # Python floats and ints, as float() and int() give
    return [_json_value(value) for value in column]


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return str(value)
