"""Adapters that give every model format one interface: scores and SHAP-ready views.

Classifier scores are always for the manifest's favourable class: ``margin`` is its
log-odds, ``probability`` its probability. Regression models return their value for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from service.registry.columns import column_features
from service.registry.compiled_transform import (
    CompiledTransform,
    compile_preprocessor,
    proven,
)
from service.registry.frame_memo import FrameMemo
from service.registry.manifest import FeatureType, Manifest, Task


class ManifestMismatchError(ValueError):
    """The artifact loaded but disagrees with the manifest at ``loc`` (a manifest field)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(frozen=True)
class LinearView:
    """A model that is linear in its design matrix: margin = design @ coef + intercept."""

    coef: np.ndarray
    intercept: float


class Predictor(ABC):
    """A loaded model behind the manifest's raw features."""

    # True when each row scored costs far more than finding repeated rows (a remote
    # endpoint): explainers that know how their frames repeat then send each row once.
    prefers_distinct_rows = False

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.is_classifier = manifest.task is Task.binary_classification

    @abstractmethod
    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds of the favourable class (classifiers) or the predicted value."""

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the favourable class (classifiers) or the predicted value."""
        margin = self.margin(frame)
        return expit(margin) if self.is_classifier else margin

    def output(self, frame: pd.DataFrame, space: str) -> np.ndarray:
        """Model output in ``space``: ``log_odds``, ``probability`` or ``raw`` (regression)."""
        return self.probability(frame) if space == "probability" else self.margin(frame)

    def speed_up(self, rows: pd.DataFrame) -> None:
        """Switch to faster ways of scoring that give exactly the same results on ``rows``
        (the version's reference rows and every category); by default there are none."""
        return None

    def fingerprint(self) -> str | None:
        """An identity of the model's answers, when it is not a file the service holds
        (remote models: ``sha256:...`` of their answers on the reference rows)."""
        return None

    # --- views used by exact SHAP algorithms; None when the model does not offer them.
    def design(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The numeric matrix the underlying estimator sees."""
        return None

    def column_features(self) -> list[int] | None:
        """Raw feature index of each design column."""
        return None

    def tree_model(self) -> Any | None:
        """What ``shap.TreeExplainer`` accepts; its raw output is ``output_sign`` * margin."""
        return None

    def linear_view(self) -> LinearView | None:
        return None

    output_sign: float = 1.0


class SklearnPredictor(Predictor):
    """A scikit-learn estimator or pipeline that takes the raw feature frame."""

    def __init__(self, manifest: Manifest, model: Any) -> None:
        super().__init__(manifest)
        self.model = model
        steps = getattr(model, "steps", None)
        self.preprocessor = model[:-1] if steps and len(steps) > 1 else None
        self.estimator = model[-1] if steps else model
        if self.is_classifier:
            classes = [str(c) for c in getattr(model, "classes_", [])]
            if sorted(classes) != sorted(manifest.classes or []):
                raise ManifestMismatchError(
                    ("classes",),
                    f"the model's classes_ {classes} differ from the manifest's classes "
                    f"{manifest.classes} (the same labels are required, in any order)",
                )
            declared = manifest.artifact.positive_class
            if declared is not None and declared != classes[1]:
                raise ManifestMismatchError(
                    ("artifact", "positive_class"),
                    f"artifact.positive_class '{declared}' is not the class this model scores: a "
                    f"scikit-learn model's classes come from its classes_ {classes} and it "
                    f"scores classes_[1] '{classes[1]}'; remove positive_class or set it to "
                    f"'{classes[1]}'",
                )
            self.favourable_index = classes.index(str(manifest.favourable_class))
            # decision_function and tree/linear raw outputs are for classes_[1].
            self.output_sign = 1.0 if self.favourable_index == 1 else -1.0
        self._memo = FrameMemo()
        self._compiled: CompiledTransform | None = None
        self._probability_from_margin = False

    def speed_up(self, rows: pd.DataFrame) -> None:
        """Transform with the preprocessor compiled to table lookups, once it gives exactly
        the preprocessor's matrix on ``rows``; and take probabilities from the margin
        already computed, once that gives exactly ``predict_proba`` on ``rows``."""
        if self.preprocessor is not None:
            compiled = compile_preprocessor(self.preprocessor)
            if compiled is not None and proven(compiled, self.preprocessor, rows):
                self._compiled = compiled
        self._probability_from_margin = self._logistic_link_proven(rows)

    def _logistic_link_proven(self, rows: pd.DataFrame) -> bool:
        """Whether the favourable class's ``predict_proba`` is the logistic function of
        ``decision_function``, bit for bit on ``rows``, for an estimator whose binary
        probabilities are by construction that function element by element."""
        if not self.is_classifier or len(rows) == 0:
            return False
        if type(self.estimator).__name__ not in LOGISTIC_LINK_CLASSIFIERS:
            return False
        try:
            derived = self._probability_of_margin(self._margin(rows))
            direct = self._probability(rows)
        except (ValueError, TypeError, AttributeError):
            return False
        return derived.dtype == direct.dtype and bool(np.array_equal(derived, direct))

    def _probability_of_margin(self, margin: np.ndarray) -> np.ndarray:
        # as scikit-learn's binomial loss: classes_[1] is expit(raw), classes_[0] 1 - that
        positive = expit(self.output_sign * margin)
        return positive if self.favourable_index == 1 else 1 - positive

    @property
    def probability_from_margin(self) -> bool:
        return self._probability_from_margin

    @property
    def transform_compiled(self) -> bool:
        return self._compiled is not None

    def _transform(self, frame: pd.DataFrame) -> Any:
        if self._compiled is not None:
            design = self._compiled.transform(frame)
            if design is not None:
                return design
        return self.preprocessor.transform(frame)  # type: ignore[union-attr]

    def _input(self, frame: pd.DataFrame) -> tuple[Any, Any]:
        """(estimator to call, what to call it on): the final step on the memoised design
        matrix when there is a preprocessor, else the model on the frame."""
        if self.preprocessor is None:
            return self.model, frame
        return self.estimator, self._memo.get(frame, "design", lambda: self._transform(frame))

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self._memo.get(frame, "margin", lambda: self._margin(frame)).copy()

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.is_classifier:
            return self.margin(frame)
        return self._memo.get(frame, "probability", lambda: self._probability(frame)).copy()

    def _margin(self, frame: pd.DataFrame) -> np.ndarray:
        model, data = self._input(frame)
        if not self.is_classifier:
            return np.asarray(model.predict(data), dtype=float)
        if hasattr(model, "decision_function"):
            return self.output_sign * np.asarray(model.decision_function(data), dtype=float)
        return logit(np.clip(self.probability(frame), 1e-15, 1 - 1e-15))

    def _probability(self, frame: pd.DataFrame) -> np.ndarray:
        if self._probability_from_margin:
            margin = self._memo.get(frame, "margin", lambda: self._margin(frame))
            return self._probability_of_margin(margin)
        model, data = self._input(frame)
        return np.asarray(model.predict_proba(data), dtype=float)[:, self.favourable_index]

    def design(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.preprocessor is None:
            if all(f.type is FeatureType.numeric for f in self.manifest.features):
                return frame[self.manifest.feature_names].to_numpy(dtype=float)
            return None
        _, out = self._input(frame)
        out = out.toarray() if hasattr(out, "toarray") else out
        return np.asarray(out, dtype=float)

    def column_features(self) -> list[int] | None:
        if self.preprocessor is None:
            return list(range(len(self.manifest.features)))
        return column_features(self.preprocessor, self.manifest.feature_names)

    def tree_model(self) -> Any | None:
        return self.estimator

    def linear_view(self) -> LinearView | None:
        coef = getattr(self.estimator, "coef_", None)
        intercept = getattr(self.estimator, "intercept_", None)
        if coef is None or intercept is None or np.asarray(coef).ndim > 2:
            return None
        coef = np.asarray(coef, dtype=float)
        if coef.ndim == 2 and coef.shape[0] != 1:
            return None
        link_is_logit = not self.is_classifier or hasattr(self.estimator, "predict_log_proba")
        if not link_is_logit or type(self.estimator).__name__ not in LINEAR_ESTIMATORS:
            return None
        return LinearView(
            coef=self.output_sign * coef.ravel(),
            intercept=float(self.output_sign * np.asarray(intercept, dtype=float).ravel()[0]),
        )


# Binary classifiers whose predict_proba is expit(decision_function) element by element
# (scikit-learn's binomial loss); each is still proven on the version's rows.
LOGISTIC_LINK_CLASSIFIERS = frozenset(
    {"GradientBoostingClassifier", "HistGradientBoostingClassifier", "LogisticRegression"}
)

# Estimators whose margin is exactly design @ coef_ + intercept_ (logistic link for classifiers).
LINEAR_ESTIMATORS = frozenset(
    {"LogisticRegression", "LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDRegressor"}
)


class CodedPredictor(Predictor):
    """Base for boosters fed categorical codes: each category's index in the manifest."""

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for feature in self.manifest.features:
            values = frame[feature.name]
            if feature.type is FeatureType.numeric:
                columns.append(values.to_numpy(dtype=float))
            else:
                codes = {c: i for i, c in enumerate(feature.categories or [])}
                columns.append(np.array([codes[v] for v in values], dtype=float))
        return np.column_stack(columns)

    def column_features(self) -> list[int]:
        return list(range(len(self.manifest.features)))

    def _check_feature_names(self, names: list[str] | None) -> None:
        """The design is built in manifest order; a booster that named its inputs must
        have been trained on the same features in the same order."""
        if not names or list(names) == [f"Column_{i}" for i in range(len(names))]:
            return  # unnamed (LightGBM names unnamed columns Column_<i>)
        if list(names) != self.manifest.feature_names:
            raise ManifestMismatchError(
                ("features",),
                f"booster features {list(names)} differ from the manifest features "
                f"{self.manifest.feature_names} (same names in the same order are required)",
            )

    def _sign(self) -> float:
        # The booster's raw score is for the manifest's positive class (artifact.positive_class,
        # else classes[1]); flip it when that is not the favourable class.
        if not self.is_classifier:
            return 1.0
        return 1.0 if self.manifest.positive_class == self.manifest.favourable_class else -1.0


class XGBoostPredictor(CodedPredictor):
    def __init__(self, manifest: Manifest, booster: Any) -> None:
        super().__init__(manifest)
        self.booster = booster
        self.output_sign = self._sign()
        self._check_feature_names(booster.feature_names)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        import xgboost

        names = self.booster.feature_names
        matrix = xgboost.DMatrix(self.design(frame), feature_names=names)
        raw = np.asarray(self.booster.predict(matrix, output_margin=True), dtype=float)
        return self.output_sign * raw

    def tree_model(self) -> Any:
        return self.booster


class LightGBMPredictor(CodedPredictor):
    def __init__(self, manifest: Manifest, booster: Any) -> None:
        super().__init__(manifest)
        self.booster = booster
        self.output_sign = self._sign()
        self._check_feature_names(booster.feature_name())

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self.booster.predict(self.design(frame), raw_score=True)
        return self.output_sign * np.asarray(raw, dtype=float)

    def tree_model(self) -> Any:
        return self.booster
