"""SHAP: exact algorithms where the model allows (tree, linear), a sampling estimator
otherwise; always per raw feature, interventional against the model's reference data."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from service.errors import invalid
from service.explainers.base import Explainer
from service.explainers.shap.attribution import Attributions
from service.explainers.shap.exact import DEFAULT_BACKGROUND_ROWS as EXACT_BACKGROUND_ROWS
from service.explainers.shap.exact import ExactShap
from service.explainers.shap.linear import LinearShap
from service.explainers.shap.options import ShapOptions
from service.explainers.shap.permutation import DEFAULT_BACKGROUND_ROWS, PermutationShap
from service.explainers.shap.tree import TreeShap
from service.registry.loaded import LoadedModel

BACKGROUND_SEED = 0
VERIFY_ROWS = 5
VERIFY_TOLERANCE = 1e-6


class ShapExplainer(Explainer):
    method: ClassVar[str] = "shap"
    Options = ShapOptions
    options: ShapOptions

    def __init__(self, model: LoadedModel, options: ShapOptions) -> None:  # type: ignore[override]
        super().__init__(model, options)
        predictor = model.predictor
        self.space = _space(options.output, predictor.is_classifier)
        self.fallback_reason: str | None = None
        self.self_check_error: float | None = None
        self.engine: TreeShap | LinearShap | ExactShap | PermutationShap | None = None
        candidates = {
            "linear": lambda: LinearShap(predictor, self._background(None)),
            "tree": lambda: TreeShap(predictor, self._background(None)),
        }
        for name, build in candidates.items():
            if options.algorithm in ("auto", name) and self.engine is None:
                self.engine, why = self._verified(build)
                self.algorithm = name
                if why and options.algorithm == name:
                    raise invalid(
                        ("body", "options", "shap", "algorithm"),
                        f"'{name}' SHAP is not available for this model in {self.space} "
                        f"space ({why}); use 'auto' or 'sampling'",
                    )
                if why and self.fallback_reason is None and "offers no" not in why:
                    self.fallback_reason = f"{name}: {why}"
        if self.engine is None and options.algorithm == "exact":
            try:
                rows = self._background(EXACT_BACKGROUND_ROWS)
                self.engine = ExactShap(predictor, rows, self.space)
            except ValueError as exc:
                raise invalid(("body", "options", "shap", "algorithm"), str(exc)) from exc
            self.algorithm = "exact"
        if self.engine is None:
            rows = self._background(DEFAULT_BACKGROUND_ROWS)
            self.engine = PermutationShap(predictor, rows, self.space, options.permutations)
            self.algorithm = "sampling"

    def _verified(self, build: Any) -> tuple[TreeShap | LinearShap | None, str | None]:
        """Build an exact engine and prove it on reference rows: its values must add up to
        the model's own output in the requested space, else it is not used."""
        probe = self.model.reference.iloc[:VERIFY_ROWS]
        try:
            engine = build()
            # shap may accept a model and only fail when computing (e.g. XGBoost
            # categorical splits raise NotImplementedError in shap_values)
            attributions = engine.explain(probe)
        except Exception as exc:  # noqa: BLE001 - the capability is absent
            return None, str(exc) or type(exc).__name__
        expected = self.model.predictor.output(probe, self.space)
        error = np.abs(expected - attributions.base_value - attributions.values.sum(axis=1))
        if not np.all(error <= VERIFY_TOLERANCE * np.maximum(1.0, np.abs(expected))):
            return None, f"its values do not add up to the model's {self.space} output"
        self.self_check_error = float(error.max())
        return engine, None

    def summary(self) -> dict[str, Any]:
        """How this explainer computes: algorithm, why it fell back, the exact algorithm's
        self-check (largest additivity error on reference rows, relative tolerance) and the
        background used."""
        assert self.engine is not None
        rows = self.engine.rows
        everything = rows >= len(self.model.reference)
        exact = not isinstance(self.engine, PermutationShap)
        return {
            "algorithm": self.algorithm,
            "fallback_reason": self.fallback_reason,
            "self_check_error": self.self_check_error if exact else None,
            "self_check_tolerance": VERIFY_TOLERANCE if self.self_check_error is not None else None,
            "background": {
                "rows": rows,
                "selection": "all reference rows"
                if everything
                else f"{rows} reference rows sampled with seed {BACKGROUND_SEED}",
            },
        }

    def _background(self, default_rows: int | None) -> pd.DataFrame:
        reference = self.model.reference
        rows = self.options.background_rows or default_rows
        if rows is None or rows >= len(reference):
            return reference
        return reference.sample(rows, random_state=BACKGROUND_SEED).reset_index(drop=True)

    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        engine = self.engine
        if isinstance(engine, PermutationShap):
            parts = [engine.explain_row(frame.iloc[[i]], seeds[i]) for i in range(len(frame))]
        else:
            assert engine is not None
            parts = [engine.explain(frame)]
        model_output = self.model.predictor.output(frame, self.space)
        results, row = [], 0
        for part in parts:
            for i in range(part.values.shape[0]):
                results.append(
                    self._format(frame, row, part, i, float(model_output[row]), seeds[row])
                )
                row += 1
        return results

    def _format(
        self, frame: pd.DataFrame, row: int, part: Attributions, i: int, fx: float, seed: int
    ) -> dict[str, Any]:
        values = part.values[i]
        errors = None if part.std_error is None else part.std_error[i]
        features = self.model.manifest.features
        order = sorted(range(len(features)), key=lambda j: (-abs(values[j]), j))
        attributions = []
        for j in order:
            item: dict[str, Any] = {
                "feature": features[j].name,
                "value": _json_value(frame.iloc[row, j]),
                "contribution": float(values[j]),
            }
            if errors is not None:
                item["std_error"] = float(errors[j])
            attributions.append(item)
        evidence: dict[str, Any] = {
            "algorithm": self.algorithm,
            "model_output": fx,
            "additivity_error": abs(fx - part.base_value - float(np.sum(values))),
        }
        if self.fallback_reason:
            evidence["fallback_reason"] = self.fallback_reason
        if isinstance(self.engine, PermutationShap):
            evidence["permutations"] = self.engine.permutations
            evidence["seed"] = seed
            evidence["max_std_error"] = float(np.max(errors)) if errors is not None else None
        assert self.engine is not None
        return {
            "base_value": part.base_value,
            "output_space": self.space,
            "perturbation": "interventional",
            "reference": {
                "rows": self.engine.rows,
                "source": self.model.manifest.reference_data.description or "reference data",
            },
            "attributions": attributions,
            "evidence": evidence,
        }


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


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return str(value)
