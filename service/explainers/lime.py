"""LIME for tabular data in the raw feature space, vectorised in numpy.

Per instance, ``samples - 1`` neighbours are drawn (the instance itself is sample 0, as in
the ``lime`` package): every feature independently takes the value of a uniformly drawn
reference row, so categoricals follow their reference frequencies and numerics their
reference distribution (and so the reference frequency of each quartile bin). The
interpretable representation is, per feature, one column:

* ``discretize`` (default): an indicator "the sample is in the instance's quartile bin"
  (numerics; bins from the reference quartiles) or "has the instance's category";
* otherwise numerics are standardised by the reference mean and standard deviation and
  categoricals stay indicators.

Samples are weighted by lime's exponential kernel ``sqrt(exp(-d^2 / width^2))`` on the
Euclidean distance to the instance in that representation (default width
``0.75 * sqrt(n_features)``), ``num_features`` columns are chosen as lime's ``'auto'``
does (forward selection up to 6 features, else the highest weights of a ridge fit on all
features) and a weighted ridge (alpha 1, unpenalised intercept, as lime's default) is
fitted in closed form to the model's output. The weighted R^2 of that surrogate on the
samples is reported as evidence of how far it can be trusted.

The model is called once per instance (and per stability run) on all its samples. Where
the model is a scikit-learn pipeline with a column-separable preprocessor, the samples'
design matrix is gathered from the reference rows' encoded columns (and the instance is
encoded from per-feature category tables and affine maps) instead of running the
preprocessor on every sample; that path is used only after it reproduced the
preprocessor's encoding of the reference rows and the model's own output on probe
samples, otherwise the sample frame goes through ``predictor.output``. Both paths give
the same explanation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.special import logit

from service.errors import invalid
from service.explainers.base import Explainer, MethodOptions, checked
from service.registry.loaded import LoadedModel, typed_frame
from service.registry.manifest import FeatureType, Manifest
from service.registry.predictors import SklearnPredictor

RIDGE_ALPHA = 1.0  # lime's default surrogate: Ridge(alpha=1)
SELECTION_ALPHA = 0.01  # lime's 'highest_weights': Ridge(alpha=0.01) on all features
FORWARD_SELECTION_MAX = 6  # lime's 'auto': forward selection up to 6 features
QUARTILES = (25.0, 50.0, 75.0)
PROBE_SEED = 0
PROBE_SAMPLES = 128
PROBE_TOLERANCE = 1e-9


class LimeOptions(MethodOptions):
    """How the local surrogate is built. Defaults follow lime's LimeTabularExplainer."""

    samples: int = Field(
        5000,
        ge=100,
        le=100_000,
        description="Perturbed samples per instance (the instance itself included).",
    )
    num_features: int = Field(
        10, ge=1, le=50, description="Terms of the sparse surrogate (at most the feature count)."
    )
    kernel_width: float | None = Field(
        None,
        gt=0,
        le=1e6,
        allow_inf_nan=False,
        description="Width of the exponential kernel; default 0.75 * sqrt(number of features).",
    )
    discretize: bool = Field(
        True,
        description="Numerics as reference-quartile bins (true) or standardised values (false).",
    )
    output: Literal["auto", "probability", "log_odds", "raw"] = Field(
        "auto",
        description="auto: probability for classifiers, raw for regression.",
        json_schema_extra=checked("log_odds and probability apply to classifiers only"),
    )
    stability: int | None = Field(
        None,
        ge=2,
        le=20,
        description="Also report the stability of the selected features: their mean "
        "pairwise Jaccard overlap over this many runs (this explanation and reseeded "
        "repeats); default off.",
    )


class LimeExplainer(Explainer):
    method: ClassVar[str] = "lime"
    Options = LimeOptions
    options: LimeOptions

    def __init__(  # type: ignore[override]
        self, model: LoadedModel, options: LimeOptions, *, gather_design: bool = True
    ) -> None:
        super().__init__(model, options)
        predictor = model.predictor
        self.space = _space(options.output, predictor.is_classifier)
        self.features = model.manifest.features
        reference = model.reference[model.manifest.feature_names].reset_index(drop=True)
        if len(reference) == 0:
            raise ValueError("LIME needs reference rows to sample from")
        self.reference = reference
        self._arrays = [reference[name].array for name in reference.columns]
        n_features = len(self.features)
        self.kernel_width = float(options.kernel_width or 0.75 * math.sqrt(n_features))
        self.num_features = min(options.num_features, n_features)
        if self.num_features == n_features:
            self.selection = "all"
        elif self.num_features <= FORWARD_SELECTION_MAX:
            self.selection = "forward_selection"
        else:
            self.selection = "highest_weights"

        # Per feature: is its column an indicator (bin/category) or a standardised value?
        self.indicator = np.array(
            [options.discretize or f.type is not FeatureType.numeric for f in self.features]
        )
        self.edges: dict[int, np.ndarray] = {}
        self.mean = np.zeros(n_features)
        self.scale = np.ones(n_features)
        ref_codes = np.zeros((len(reference), n_features), dtype=np.int64)
        ref_standard = np.zeros((len(reference), n_features))
        for j, feature in enumerate(self.features):
            column = reference[feature.name]
            if feature.type is FeatureType.numeric:
                values = column.to_numpy(dtype=float)
                if options.discretize:
                    self.edges[j] = np.unique(np.percentile(values, QUARTILES))
                    ref_codes[:, j] = np.searchsorted(self.edges[j], values)
                else:
                    self.mean[j] = values.mean()
                    sd = values.std()
                    self.scale[j] = sd if sd > 0 else 1.0  # as sklearn's StandardScaler
                    ref_standard[:, j] = (values - self.mean[j]) / self.scale[j]
            else:
                ref_codes[:, j] = _category_codes(column, feature.categories or [])
        self.ref_codes, self.ref_standard = ref_codes, ref_standard

        self.model_evaluation = "frame"
        self.design_note: str | None = "not requested"
        self._design: _DesignPath | None = None
        if gather_design:
            self._design, self.design_note = self._verified_design_path()
            if self._design is not None:
                self.model_evaluation = "design"

    # --- public -------------------------------------------------------------------------
    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        frame = frame[self.model.manifest.feature_names].reset_index(drop=True)
        codes, standard = self._representation(frame)
        designs = None if self._design is None else self._design.instance_designs(frame, codes)
        results = []
        for i in range(len(frame)):
            row = frame.iloc[[i]].reset_index(drop=True)
            # Each reference row in the interpretable representation of this instance.
            table = np.where(self.indicator, self.ref_codes == codes[i], self.ref_standard)
            sample = _Instance(
                row=row,
                z=np.where(self.indicator, 1.0, standard[i]),
                table=table.ravel(),
                design=None if designs is None else designs[i],
            )
            runs = [np.random.default_rng(seeds[i])]
            if self.options.stability:
                children = np.random.SeedSequence(seeds[i]).spawn(self.options.stability - 1)
                runs += [np.random.default_rng(child) for child in children]
            fits = [self._fit(sample, rng) for rng in runs]
            stability = None
            if self.options.stability:
                sets = [set(fit.selected.tolist()) for fit in fits]
                pairs = [len(a & b) / len(a | b) for a, b in combinations(sets, 2)]
                stability = {"runs": len(fits), "mean_jaccard": float(np.mean(pairs))}
            results.append(self._format(row, fits[0], seeds[i], stability))
        return results

    # --- sampling and fitting -------------------------------------------------------------
    def _fit(self, instance: _Instance, rng: np.random.Generator) -> _Fit:
        n_features = len(self.features)
        source = rng.integers(0, len(self.reference), size=(self.options.samples - 1, n_features))
        # Interpretable representation of the samples; row 0 is the instance.
        z = np.empty((self.options.samples, n_features))
        z[0] = instance.z
        np.take(instance.table, source * n_features + np.arange(n_features), out=z[1:])
        distance2 = np.sum((z - instance.z) ** 2, axis=1)
        weights = np.sqrt(np.exp(-distance2 / self.kernel_width**2))
        y = self._model_output(instance, source)
        return _surrogate(z, y, weights, self.num_features, self.selection)

    def _representation(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Bin/category codes and standardised numerics of the instances."""
        codes = np.zeros(frame.shape, dtype=np.int64)
        standard = np.zeros(frame.shape)
        for j, feature in enumerate(self.features):
            column = frame[feature.name]
            if feature.type is not FeatureType.numeric:
                codes[:, j] = _category_codes(column, feature.categories or [])
                continue
            values = column.to_numpy(dtype=float)
            if j in self.edges:
                codes[:, j] = np.searchsorted(self.edges[j], values)
            standard[:, j] = (values - self.mean[j]) / self.scale[j]
        return codes, standard

    def _model_output(self, instance: _Instance, source: np.ndarray) -> np.ndarray:
        if self._design is not None and instance.design is not None:
            return self._design.output(instance.design, source)
        return self.model.predictor.output(self._sample_frame(instance.row, source), self.space)

    def _sample_frame(self, row: pd.DataFrame, source: np.ndarray) -> pd.DataFrame:
        """The samples as a typed frame: row 0 is the instance, then the gathered values."""
        columns = self.reference.columns
        sampled = {name: self._arrays[j].take(source[:, j]) for j, name in enumerate(columns)}
        return pd.concat([row, pd.DataFrame(sampled)], ignore_index=True)

    def _verified_design_path(self) -> tuple[_DesignPath | None, str | None]:
        """Build the gathered-design path and prove it against the model's own encoding and
        output (the reference rows encoded, and the output on probe samples); else the
        frame path is used."""
        try:
            path = _DesignPath(self.model, self.reference, self.space)
            if path.encodings is not None:
                codes, _ = self._representation(self.reference)
                encoded = path.instance_designs(self.reference, codes)
                if not np.allclose(encoded, path.reference_design, rtol=1e-9, atol=1e-12):
                    path.encodings = None  # encode instances with the preprocessor
            rng = np.random.default_rng(PROBE_SEED)
            probe_row = self.reference.iloc[[0]].reset_index(drop=True)
            codes, _ = self._representation(probe_row)
            source = rng.integers(0, len(self.reference), size=(PROBE_SAMPLES, len(self.features)))
            fast = path.output(path.instance_designs(probe_row, codes)[0], source)
            expected = self.model.predictor.output(
                self._sample_frame(probe_row, source), self.space
            )
        except Exception as exc:  # noqa: BLE001 - the capability is absent
            return None, str(exc) or type(exc).__name__
        error = np.abs(np.asarray(fast, dtype=float) - expected)
        if fast.shape != expected.shape or not np.all(
            error <= PROBE_TOLERANCE * np.maximum(1.0, np.abs(expected))
        ):
            return None, "gathered design does not reproduce the model's output"
        return path, None

    # --- output ---------------------------------------------------------------------------
    def _format(
        self, row: pd.DataFrame, fit: _Fit, seed: int, stability: dict[str, Any] | None
    ) -> dict[str, Any]:
        order = sorted(
            range(len(fit.selected)), key=lambda k: (-abs(fit.coef[k]), int(fit.selected[k]))
        )
        weights = []
        for k in order:
            j = int(fit.selected[k])
            feature = self.features[j]
            value = row[feature.name].iloc[0]
            weights.append(
                {
                    "feature": feature.name,
                    "value": _json_value(value, feature.type),
                    "condition": self._condition(j, value),
                    "weight": float(fit.coef[k]),
                }
            )
        return {
            "weights": weights,
            "intercept": fit.intercept,
            "surrogate_prediction": fit.surrogate_prediction,
            "model_prediction": fit.model_prediction,
            "output_space": self.space,
            "reference": {
                "rows": len(self.reference),
                "source": self.model.manifest.reference_data.description or "reference data",
            },
            "evidence": {
                "weighted_r2": fit.weighted_r2,
                "kernel_width": self.kernel_width,
                "samples": self.options.samples,
                "effective_samples": fit.effective_samples,
                "seed": seed,
                "discretize": self.options.discretize,
                "feature_selection": self.selection,
                "stability": stability,
            },
        }

    def _condition(self, j: int, value: Any) -> str:
        feature = self.features[j]
        name = feature.name
        if feature.type is not FeatureType.numeric:
            return f"{name} = {value}"
        if j not in self.edges:
            return f"({name} - {self.mean[j]:.6g}) / {self.scale[j]:.6g}"
        edges = self.edges[j]
        b = int(np.searchsorted(edges, float(value)))
        if b == 0:
            return f"{name} <= {_number(edges[0])}"
        if b == len(edges):
            return f"{name} > {_number(edges[-1])}"
        return f"{_number(edges[b - 1])} < {name} <= {_number(edges[b])}"


@dataclass(frozen=True)
class _Instance:
    """One instance: its frame row, its interpretable representation ``z`` and the reference
    rows in that representation (``table``, raveled), its design row on the design path."""

    row: pd.DataFrame
    z: np.ndarray
    table: np.ndarray
    design: np.ndarray | None


class _Fit:
    """A surrogate fitted to one instance's samples."""

    __slots__ = (
        "selected",
        "coef",
        "intercept",
        "surrogate_prediction",
        "model_prediction",
        "weighted_r2",
        "effective_samples",
    )

    def __init__(
        self,
        selected: np.ndarray,
        coef: np.ndarray,
        intercept: float,
        surrogate_prediction: float,
        model_prediction: float,
        weighted_r2: float,
        effective_samples: float,
    ) -> None:
        self.selected, self.coef, self.intercept = selected, coef, intercept
        self.surrogate_prediction, self.model_prediction = surrogate_prediction, model_prediction
        self.weighted_r2, self.effective_samples = weighted_r2, effective_samples


def _surrogate(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, num_features: int, selection: str
) -> _Fit:
    """Select features and fit the weighted ridge surrogate, all from the weighted,
    centred Gram matrix (the same solution as sklearn's Ridge with sample_weight)."""
    total = weights.sum()
    z_mean = weights @ z / total
    y_mean = float(weights @ y / total)
    zc = z - z_mean
    yc = y - y_mean
    weighted = zc * weights[:, None]
    gram = zc.T @ weighted
    cross = weighted.T @ yc
    if selection == "all":
        selected = np.arange(z.shape[1])
    elif selection == "forward_selection":
        selected = _forward_selection(gram, cross, num_features)
    else:
        coef_all = _ridge(gram, cross, SELECTION_ALPHA)
        selected = np.argsort(-np.abs(coef_all * z[0]), kind="stable")[:num_features]
    sub = np.ix_(selected, selected)
    coef = _ridge(gram[sub], cross[selected], RIDGE_ALPHA)
    intercept = y_mean - float(z_mean[selected] @ coef)
    fitted = intercept + z[:, selected] @ coef
    residual = float(weights @ (y - fitted) ** 2)
    spread = float(weights @ yc**2)
    if spread <= total * (1e-12 * max(1.0, abs(y_mean))) ** 2:
        r2 = 1.0  # the model is constant around the instance: the intercept is exact
    else:
        r2 = 1.0 - residual / spread
    return _Fit(
        selected=selected,
        coef=coef,
        intercept=intercept,
        surrogate_prediction=float(fitted[0]),
        model_prediction=float(y[0]),
        weighted_r2=r2,
        effective_samples=float(total**2 / (weights @ weights)),
    )


def _ridge(gram: np.ndarray, cross: np.ndarray, alpha: float) -> np.ndarray:
    return np.linalg.solve(gram + alpha * np.eye(gram.shape[0]), cross)


def _forward_selection(gram: np.ndarray, cross: np.ndarray, k: int) -> np.ndarray:
    """lime's forward selection: greedily add the feature that most raises the weighted R^2
    of an unpenalised least-squares fit. The gain of feature j given the set S is its
    squared partial covariance with the output over its partial variance, so one step
    scores every candidate at once."""
    diagonal = np.diag(gram).copy()
    floor = 1e-12 * max(float(diagonal.max()), 1e-300)
    selected: list[int] = []
    for _ in range(k):
        if selected:
            inverse = np.linalg.pinv(gram[np.ix_(selected, selected)])
            g_s = gram[selected, :]  # (|S|, d)
            partial_cov = cross - g_s.T @ (inverse @ cross[selected])
            partial_var = diagonal - np.einsum("sd,sd->d", g_s, inverse @ g_s)
        else:
            partial_cov, partial_var = cross, diagonal
        gain = np.where(partial_var > floor, partial_cov**2 / np.maximum(partial_var, floor), 0.0)
        gain[selected] = -np.inf
        selected.append(int(np.argmax(gain)))
    return np.array(selected)


class _DesignPath:
    """Model output of gathered samples from the reference rows' design columns.

    Valid for a scikit-learn pipeline whose preprocessor maps every design column to one
    raw feature (``predictor.column_features()``): a sample's design row is then, column
    by column, the design of the row its feature's value was taken from.
    """

    def __init__(self, model: LoadedModel, reference: pd.DataFrame, space: str) -> None:
        predictor = model.predictor
        if not isinstance(predictor, SklearnPredictor):
            raise ValueError("not a scikit-learn predictor")
        owner = predictor.column_features()
        design = predictor.design(reference)
        if owner is None or design is None:
            raise ValueError("the preprocessor is not column-separable")
        self.predictor = predictor
        self.reference_design = np.asarray(design, dtype=float)
        owner = np.asarray(owner)
        # Per raw feature: its design columns (a slice where contiguous).
        self.blocks: list[tuple[int, np.ndarray | slice, np.ndarray]] = []
        for j in np.unique(owner):
            columns = np.flatnonzero(owner == j)
            contiguous = columns[-1] - columns[0] + 1 == columns.size
            where = slice(int(columns[0]), int(columns[-1]) + 1) if contiguous else columns
            block = np.ascontiguousarray(self.reference_design[:, columns])
            self.blocks.append((int(j), where, block))
        self.predict = _estimator_output(predictor, space)
        self.encodings = self._encodings(model.manifest, reference)

    def instance_designs(self, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
        """The instances' design rows; from the per-feature encodings where there are
        (``codes``: the manifest index of each categorical value), else by the model's
        preprocessor."""
        if self.encodings is None or np.any(codes < 0):
            design = self.predictor.design(frame)
            assert design is not None
            return np.asarray(design, dtype=float)
        design = np.empty((len(frame), self.reference_design.shape[1]))
        for j, columns, _ in self.blocks:
            encoding = self.encodings[j]
            if isinstance(encoding, np.ndarray):
                design[:, columns] = encoding[codes[:, j]]
            else:
                x0, at_x0, slope = encoding
                x = frame.iloc[:, j].to_numpy(dtype=float)
                design[:, columns] = at_x0 + (x - x0)[:, None] * slope
        return design

    def _encodings(
        self, manifest: Manifest, reference: pd.DataFrame
    ) -> dict[int, np.ndarray | tuple[float, np.ndarray, np.ndarray]] | None:
        """Each feature's design block as a function of its value, so that instances are
        encoded without a call of the preprocessor (a fixed cost of milliseconds per call):
        a table over the manifest's categories, an affine map for a numeric (proved on
        points inside and well outside the reference range). None if a numeric's block is
        not affine in its value (e.g. a clipping scaler)."""
        features = manifest.features
        size = max([12] + [len(f.categories or []) for f in features])
        columns: dict[str, Any] = {}
        for f in features:
            if f.type is FeatureType.numeric:
                values = reference[f.name].to_numpy(dtype=float)
                low, high = float(values.min()), float(values.max())
                span = max(high - low, 1.0)
                anchors = [low - 10 * span, high + 10 * span]
                if f.range is not None:
                    anchors += list(f.range)
                columns[f.name] = np.concatenate(
                    [np.linspace(low - span, high + span, size - len(anchors)), anchors]
                )
            else:
                categories = f.categories or []
                columns[f.name] = [categories[r % len(categories)] for r in range(size)]
        design = self.predictor.design(typed_frame(manifest, columns))
        assert design is not None
        design = np.asarray(design, dtype=float)
        encodings: dict[int, np.ndarray | tuple[float, np.ndarray, np.ndarray]] = {}
        for j, where, _ in self.blocks:
            block = design[:, where]
            if features[j].type is not FeatureType.numeric:
                encodings[j] = block[: len(features[j].categories or [])]
                continue
            x = columns[features[j].name]
            slope = (block[-1] - block[0]) / (x[-1] - x[0])
            fitted = block[0] + (x - x[0])[:, None] * slope
            if not np.allclose(fitted, block, rtol=1e-9, atol=1e-12):
                return None
            encodings[j] = (float(x[0]), block[0], slope)
        return encodings

    def output(self, instance_design: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Output at the instance (row 0) and at the samples whose feature j comes from
        reference row ``source[:, j]``."""
        design = np.empty((source.shape[0] + 1, self.reference_design.shape[1]))
        design[0] = instance_design
        for j, columns, block in self.blocks:
            design[1:, columns] = block.take(source[:, j], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "X does not have valid feature names"
            return np.asarray(self.predict(design), dtype=float)


def _estimator_output(
    predictor: SklearnPredictor, space: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The final estimator's output in ``space``, as ``SklearnPredictor`` computes it."""
    estimator = predictor.estimator
    if not predictor.is_classifier:
        return lambda design: np.asarray(estimator.predict(design), dtype=float)
    favourable = predictor.favourable_index

    def probability(design: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.predict_proba(design), dtype=float)[:, favourable]

    if space == "probability":
        return probability
    if hasattr(predictor.model, "decision_function"):
        sign = predictor.output_sign
        return lambda design: sign * np.asarray(estimator.decision_function(design), dtype=float)
    return lambda design: logit(np.clip(probability(design), 1e-15, 1 - 1e-15))


def _category_codes(column: pd.Series, categories: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    return np.array([index.get(str(v), -1) for v in column], dtype=np.int64)


def _space(requested: str, is_classifier: bool) -> str:
    if requested == "auto":
        return "probability" if is_classifier else "raw"
    if is_classifier and requested == "raw":
        return "log_odds"
    if not is_classifier and requested != "raw":
        raise invalid(
            ("body", "options", "lime", "output"),
            f"'{requested}' applies to classifiers; a regression model explains its raw output",
        )
    return requested


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _json_value(value: Any, kind: FeatureType) -> Any:
    if kind is FeatureType.numeric:
        return float(value)
    return str(value)
