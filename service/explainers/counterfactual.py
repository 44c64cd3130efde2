"""Counterfactual explanations: what would have to change for the model to decide otherwise.

DiCE (``dice-ml``) searches the raw features under the manifest's recourse constraints:
immutable and protected features never vary (DiCE ``features_to_vary``), numeric ranges and
directions become DiCE ``permitted_range`` ([current, max] for ``increase``, [min, current]
for ``decrease``), categoricals may only take the manifest's categories (ordinals with a
direction: the categories at or above / at or below the current one).

DiCE's answer is never trusted as it is. Every candidate is snapped (integers rounded,
unchanged values restored exactly), checked against every constraint again and re-scored by
the service's own model on a typed frame (``model.frame``) at the manifest's decision
threshold; a candidate that fails anything is dropped and counted, never returned.

DiCE can hang (its genetic search draws random initial populations until enough of them
reach the desired class, forever if none can). ``time_budget`` is enforced per applicant
inside the explainer: DiCE is called under a ``SIGALRM`` interval timer that interrupts a
call still running at its deadline. The first call asks for all ``count`` counterfactuals
(DiCE's cost barely grows with the count) within half the budget; if it is cut off, the
rest of the budget goes to calls for one counterfactual at a time; after drops, later calls
ask for the ones still missing; each call has its own seed derived from the row's seed.
Whatever was accepted by the deadline is returned, with ``evidence.shortfall_reason``
saying why there are fewer than asked. The timer needs the process's main thread (where
the worker runs tasks, in the embedded pool and in Celery prefork children); elsewhere the
budget is only checked between DiCE calls.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import math
import random
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field

from service.errors import InvalidRequestError
from service.explainers.base import Explainer, MethodOptions, checked
from service.explainers.option_checks import counterfactual_issues, why_fixed
from service.registry.loaded import LoadedModel
from service.registry.manifest import Direction, Feature, FeatureType, Task

log = logging.getLogger(__name__)

OUTCOME = "__counterfactual_outcome__"
# Consecutive DiCE searches that add no accepted counterfactual before giving up.
MAX_STALE_SEARCHES = 3
# Decimal places DiCE may use for a non-integer numeric feature (inferred from the
# reference data, at most this many).
MAX_PRECISION = 6
CONSTRAINTS_CHECKED = [
    "immutable_unchanged",
    "protected_unchanged",
    "only_features_to_vary_changed",
    "direction",
    "range",
    "categories",
    "integer",
    "desired_class_at_threshold",
]


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    low, high = pair
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError("a range is two finite numbers [min, max] with min <= max")
    return pair


PermittedRange = Annotated[tuple[float, float], AfterValidator(_ordered)]


class CounterfactualOptions(MethodOptions):
    """How counterfactuals are searched. Defaults: 3 counterfactuals towards the favourable
    class, DiCE random sampling, every mutable feature, 10 s per applicant."""

    count: int = Field(3, ge=1, le=20, description="Counterfactuals wanted per applicant.")
    desired_class: str | None = Field(
        None,
        description="Class the counterfactuals must reach; default the favourable class.",
        json_schema_extra=checked("one of the model's classes"),
    )
    method: Literal["random", "genetic", "kdtree"] = Field(
        "random", description="DiCE search: random sampling, genetic, or nearest reference rows."
    )
    features_to_vary: list[str] | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Only these features may change (a subset of the manifest's mutable ones).",
        json_schema_extra=checked("features of the model that are mutable and not protected"),
    )
    permitted_range: dict[str, PermittedRange] | None = Field(
        None,
        description="Narrower [min, max] per numeric feature, within the manifest's range.",
        json_schema_extra=checked(
            "each pair is [min, max] with min <= max, both finite; each key a numeric feature "
            "of the model that is mutable and not protected; the pair within its manifest range"
        ),
    )
    time_budget: float = Field(
        10.0, gt=0, le=120, description="Seconds per applicant; fewer counterfactuals after it."
    )


_RE_ALARM_SECONDS = 0.05


class _BudgetExceeded(BaseException):
    """Raised by the SIGALRM handler; a BaseException so that no ``except Exception`` in
    DiCE or pandas swallows it."""


@dataclass(frozen=True)
class _Domain:
    """Where one feature may go for one applicant: a numeric interval or allowed categories."""

    low: float = 0.0
    high: float = 0.0
    categories: tuple[str, ...] = ()


class CounterfactualExplainer(Explainer):
    method: ClassVar[str] = "counterfactual"
    Options = CounterfactualOptions
    options: CounterfactualOptions

    def __init__(self, model: LoadedModel, options: CounterfactualOptions) -> None:  # type: ignore[override]
        super().__init__(model, options)
        manifest = model.manifest
        self.features = manifest.features
        self.names = manifest.feature_names
        self.threshold = manifest.decision_threshold
        self.favourable = str(manifest.favourable_class)
        self.unfavourable = str(manifest.unfavourable_class)
        self._checked(options)
        self.desired = options.desired_class or self.favourable
        self.to_vary = self._features_to_vary(options.features_to_vary)
        self.ranges = dict(options.permitted_range or {})
        reference = model.reference
        self.scale = {
            f.name: _positive(float(reference[f.name].max() - reference[f.name].min()))
            for f in self.features
            if f.type is FeatureType.numeric
        }
        self.precision = {
            f.name: 0 if f.integer else _decimals(reference[f.name].to_numpy(dtype=float))
            for f in self.features
            if f.type is FeatureType.numeric
        }
        self.dice_model = _DiceModel(model)
        self.dice_data = self._dice_data(reference)
        self._dice: Any = None  # the DiCE explainer, rebuilt after an interrupted call

    def varying(self, features: Sequence[str]) -> CounterfactualExplainer:
        """The same search over only ``features``, sharing this explainer's DiCE data and
        model: building those is what costs (~0.2 s), so a search narrowed per applicant
        must not rebuild them."""
        narrower = copy.copy(self)
        narrower.options = self.options.model_copy(update={"features_to_vary": list(features)})
        narrower.to_vary = self._features_to_vary(narrower.options.features_to_vary)
        return narrower

    @classmethod
    def supports(cls, model: LoadedModel) -> bool:
        """Binary classifiers, with dice-ml installed."""
        return (
            model.manifest.task is Task.binary_classification
            and importlib.util.find_spec("dice_ml") is not None
        )

    # --- options that need the manifest ---------------------------------------------------
    def _checked(self, options: CounterfactualOptions) -> None:
        issues = counterfactual_issues(self.model.manifest, options)
        if issues:
            raise InvalidRequestError(issues)

    def _features_to_vary(self, requested: list[str] | None) -> list[str]:
        if requested is None:
            return [f.name for f in self.features if not why_fixed(f)]
        wanted = set(requested)
        return [n for n in self.names if n in wanted]

    # --- DiCE setup -------------------------------------------------------------------------
    def _dice_data(self, reference: pd.DataFrame) -> Any:
        """DiCE's data interface: the reference rows labelled by the model, plus one padding
        row per manifest category the reference lacks (DiCE only knows categories it sees)."""
        import dice_ml

        rows = [reference]
        for feature in self.features:
            if feature.type is FeatureType.numeric:
                continue
            present = set(reference[feature.name])
            for category in feature.categories or []:
                if category not in present:
                    pad = reference.iloc[[0]].copy()
                    pad[feature.name] = category
                    rows.append(pad)
        frame = pd.concat(rows, ignore_index=True)
        data = self._to_dice(frame)
        data[OUTCOME] = (self.model.predictor.probability(frame) >= self.threshold).astype(int)
        return dice_ml.Data(
            dataframe=data,
            continuous_features=[f.name for f in self.features if f.type is FeatureType.numeric],
            outcome_name=OUTCOME,
            continuous_features_precision=dict(self.precision),
        )

    def _to_dice(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A typed frame as DiCE wants it: integer features as int64 (DiCE samples whole
        numbers for them), other numerics as float, categoricals as strings."""
        out = frame[self.names].copy().reset_index(drop=True)
        for feature in self.features:
            if feature.integer:
                out[feature.name] = np.round(out[feature.name].to_numpy(dtype=float)).astype(
                    np.int64
                )
        return out

    def _dice_explainer(self) -> Any:
        import dice_ml

        if self._dice is None or self.options.method == "genetic":
            # genetic keeps its population between calls: a fresh one per call
            model = dice_ml.Model(model=self.dice_model, backend="sklearn")
            self._dice = dice_ml.Dice(self.dice_data, model, method=self.options.method)
        return self._dice

    # --- explain ----------------------------------------------------------------------------
    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        return [self._explain_row(frame.iloc[[i]], seeds[i]) for i in range(len(frame))]

    def _explain_row(self, row: pd.DataFrame, seed: int) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = started + self.options.time_budget
        original = {f.name: _plain(f, row[f.name].iloc[0]) for f in self.features}
        domains = {n: self._domain(n, original[n]) for n in self.to_vary}
        varied = [n for n in self.to_vary if domains[n] is not None]
        accepted: dict[tuple[Any, ...], dict[str, Any]] = {}
        dropped, searches, shortfall = 0, 0, None
        current: float | None = None  # the applicant's own score, with the first re-scoring

        if not varied:
            shortfall = (
                "no feature can change: every feature allowed to vary is already at the end "
                "of its permitted range or direction"
            )
        else:
            query = self._to_dice(row)
            permitted = {n: _dice_range(domains[n]) for n in varied}  # type: ignore[arg-type]
            stale, seen, completed, one_at_a_time = 0, 0, 0, False
            while len(accepted) < self.options.count:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    shortfall = self._budget_reason(completed, interrupted=False)
                    break
                need = 1 if one_at_a_time else self.options.count - len(accepted)
                total = seen + need if self.options.method == "kdtree" else need
                # the first search asks for everything at once (DiCE's cost barely grows with
                # it) but may only use half the budget: if it is cut off, the rest goes to
                # searches for one counterfactual at a time, so a slow search still returns some
                allowed = remaining / 2 if searches == 0 and need > 1 else remaining
                searches += 1
                try:
                    found = self._search(
                        query, total, varied, permitted, _sub_seed(seed, searches), allowed
                    )
                except _BudgetExceeded:
                    self._dice = None  # interrupted mid-call: do not reuse its state
                    if not one_at_a_time and need > 1:
                        one_at_a_time = True
                        continue
                    shortfall = self._budget_reason(completed, interrupted=True)
                    break
                except Exception as exc:  # noqa: BLE001 - DiCE failing is reported, not raised
                    self._dice = None
                    log.exception("DiCE %s failed", self.options.method)
                    shortfall = f"DiCE ({self.options.method}) failed: {type(exc).__name__}: {exc}"
                    break
                completed += 1
                before = len(accepted)
                if self.options.method == "kdtree":
                    # deterministic: a longer list starts with the rows already checked
                    fresh, seen = found[seen:], len(found)
                else:
                    fresh = found
                lost, applicant = self._accept(fresh, original, domains, accepted, current is None)
                dropped += lost
                current = applicant if current is None else current
                if self._label(current) == self.desired or len(accepted) >= self.options.count:
                    break
                if self.options.method == "kdtree" and len(found) < total:
                    shortfall = self._kdtree_reason(len(accepted))
                    break
                stale = stale + 1 if len(accepted) == before else 0
                if stale >= MAX_STALE_SEARCHES:
                    shortfall = (
                        f"DiCE ({self.options.method}) found no further counterfactual reaching "
                        f"'{self.desired}' in {stale} consecutive searches varying {varied}"
                    )
                    break

        if current is None:
            current = self._scores([original])[0]
        if self._label(current) == self.desired:
            accepted, dropped = {}, 0
            shortfall = f"the model already decides '{self.desired}' for this applicant"
        chosen = sorted(accepted.values(), key=lambda c: (c["distance"], len(c["changes"])))
        return self._format(chosen, dropped, shortfall, seed, searches)

    def _search(
        self,
        query: pd.DataFrame,
        total: int,
        varied: list[str],
        permitted: dict[str, list[Any]],
        seed: int,
        remaining: float,
    ) -> list[list[dict[str, Any]]]:
        """One DiCE call under the deadline: per counterfactual, its candidate versions."""
        from raiutils.exceptions import UserConfigValidationException

        kwargs: dict[str, Any] = {
            "total_CFs": total,
            "desired_class": 1 if self.desired == self.favourable else 0,
            "features_to_vary": varied,
            "permitted_range": permitted,
        }
        if self.options.method == "random":
            kwargs["random_seed"] = seed
        with _seeded(seed), _quiet(), _deadline(remaining):
            explainer = self._dice_explainer()
            try:
                result = explainer.generate_counterfactuals(query, **kwargs)
            except UserConfigValidationException:
                return []  # DiCE's way of saying it found none
        examples = result.cf_examples_list[0]
        raw, sparse = examples.final_cfs_df, examples.final_cfs_df_sparse
        if raw is None or not len(raw):
            return []
        raw_rows = raw[self.names].to_dict("records")
        if sparse is None or len(sparse) != len(raw):
            return [[r] for r in raw_rows]
        # DiCE's post-hoc sparsity moves numerics back towards the applicant; its version
        # first, the unsparsified one as a fallback
        sparse_rows = sparse[self.names].to_dict("records")
        return [[a, b] for a, b in zip(sparse_rows, raw_rows, strict=True)]

    def _accept(
        self,
        found: list[list[dict[str, Any]]],
        original: dict[str, Any],
        domains: dict[str, _Domain | None],
        accepted: dict[tuple[Any, ...], dict[str, Any]],
        with_applicant: bool,
    ) -> tuple[int, float | None]:
        """Check and re-score DiCE's counterfactuals (and the applicant, if asked, in the
        same batch); add the good ones. Returns how many were dropped (none of their
        versions passed) and the applicant's probability."""
        groups = [[self._snap(c, original, domains) for c in versions] for versions in found]
        keys = list(dict.fromkeys(k for group in groups for k in group if k is not None))
        rows = [dict(zip(self.names, key, strict=True)) for key in keys]
        scored = self._scores(rows + [original] if with_applicant else rows)
        scores = dict(zip(keys, scored, strict=False))
        dropped = 0
        for group in groups:
            good = [k for k in group if k is not None and self._label(scores[k]) == self.desired]
            if not good:
                dropped += 1
            elif good[0] not in accepted and len(accepted) < self.options.count:
                accepted[good[0]] = self._counterfactual(good[0], original, scores[good[0]])
        return dropped, (scored[-1] if with_applicant else None)

    def _scores(self, instances: list[dict[str, Any]]) -> list[float]:
        """Probability of the favourable class by the service's own model, on the typed
        frame the service builds for any request (``model.frame``)."""
        if not instances:
            return []
        frame = self.model.frame(instances)
        return [float(p) for p in self.model.predictor.probability(frame)]

    def _snap(
        self,
        candidate: dict[str, Any],
        original: dict[str, Any],
        domains: dict[str, _Domain | None],
    ) -> tuple[Any, ...] | None:
        """The candidate as plain values (integers rounded, unchanged values restored
        exactly), or None if it breaks a constraint."""
        values = []
        changed = False
        for feature in self.features:
            name = feature.name
            raw = candidate[name]
            was = original[name]
            domain = domains.get(name)
            if feature.type is FeatureType.numeric:
                value = float(raw)
                if not math.isfinite(value):
                    return None
                if _same_number(value, was):
                    value = was
                else:
                    value = round(value, self.precision[name])
                    if feature.integer:
                        value = int(round(value))
                    if value == was:
                        value = was
                    elif domain is None or not domain.low <= value <= domain.high:
                        return None  # a fixed feature changed, or out of range / direction
            else:
                value = str(raw)
                if value != was and (domain is None or value not in domain.categories):
                    return None  # a fixed feature changed, or a category not allowed
            changed = changed or value != was
            values.append(value)
        return tuple(values) if changed else None

    def _domain(self, name: str, current: Any) -> _Domain | None:
        """Where feature ``name`` may go from ``current``; None if nowhere else."""
        feature = self.model.manifest.feature(name)
        if feature.type is not FeatureType.numeric:
            categories = list(feature.categories or [])
            if feature.type is FeatureType.ordinal and current in categories:
                at = categories.index(current)
                if feature.direction is Direction.increase:
                    categories = categories[at:]
                elif feature.direction is Direction.decrease:
                    categories = categories[: at + 1]
            return _Domain(categories=tuple(categories)) if len(categories) > 1 else None
        if feature.range is not None:
            low, high = feature.range
        else:
            column = self.model.reference[name]
            low = min(float(column.min()), current)
            high = max(float(column.max()), current)
        if name in self.ranges:
            low, high = max(low, self.ranges[name][0]), min(high, self.ranges[name][1])
        if feature.direction is Direction.increase:
            low = max(low, current)
        elif feature.direction is Direction.decrease:
            high = min(high, current)
        if feature.integer:
            low, high = math.ceil(low), math.floor(high)
        if low > high or (low == high == current):
            return None
        return _Domain(low=float(low), high=float(high))

    def _counterfactual(
        self, key: tuple[Any, ...], original: dict[str, Any], probability: float
    ) -> dict[str, Any]:
        changes, distance = [], 0.0
        for feature, value in zip(self.features, key, strict=True):
            was = original[feature.name]
            if value == was:
                continue
            changes.append({"feature": feature.name, "from": was, "to": value})
            if feature.type is FeatureType.numeric:
                distance += abs(value - was) / self.scale[feature.name]
            else:
                distance += 1.0
        return {
            "changes": changes,
            "probability": probability,
            "label": self._label(probability),
            "distance": distance / len(self.features),
        }

    def _format(
        self,
        chosen: list[dict[str, Any]],
        dropped: int,
        shortfall: str | None,
        seed: int,
        searches: int,
    ) -> dict[str, Any]:
        validity = changed = distance = None
        if chosen:
            # measured on the re-scored probabilities of exactly the returned values
            validity = sum(c["label"] == self.desired for c in chosen) / len(chosen)
            changed = float(np.mean([len(c["changes"]) for c in chosen]))
            distance = float(np.mean([c["distance"] for c in chosen]))
        if len(chosen) >= self.options.count:
            shortfall = None
        elif shortfall is None:
            shortfall = "fewer counterfactuals than requested were found"
        return {
            "counterfactuals": [
                {"changes": c["changes"], "probability": c["probability"], "label": c["label"]}
                for c in chosen
            ],
            "desired_class": self.desired,
            "evidence": {
                "requested": self.options.count,
                "returned": len(chosen),
                "validity": validity,
                "changed_features": changed,
                "distance": distance,
                "constraints_checked": list(CONSTRAINTS_CHECKED),
                "dropped": dropped,
                "shortfall_reason": shortfall,
                "method": self.options.method,
                "seed": seed,
                "searches": searches,
            },
        }

    def _label(self, probability: float) -> str:
        return self.favourable if probability >= self.threshold else self.unfavourable

    def _budget_reason(self, completed: int, interrupted: bool) -> str:
        reason = f"time budget of {self.options.time_budget:g} s reached"
        if interrupted:
            reason += f": DiCE ({self.options.method}) was interrupted"
        return f"{reason} after {completed} completed search(es)"

    def _kdtree_reason(self, accepted: int) -> str:
        return (
            "kdtree only proposes reference rows in the desired class that equal the applicant "
            "on every feature that may not change; "
            + ("no such row passed the checks" if accepted == 0 else "no further row did")
        )


class _DiceModel:
    """The model as DiCE sees it: ``predict_proba`` gives [1 - s, s] where s >= 0.5 exactly
    when the service's model decides the favourable class at the manifest's threshold, so
    DiCE's own 0.5 cut-off is the manifest's decision.

    Scores come from the service's predictor (any model format) on DiCE's frames as they
    are, in the manifest's column order, with pandas categoricals (DiCE's copy of the
    reference data) turned back into strings. Rebuilding a typed frame for each of the
    hundreds of single rows DiCE scores would cost more than DiCE's own work on them; what
    the search proposes is re-scored on a typed frame (``model.frame``) before it is used.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.predictor = model.predictor
        self.names = model.manifest.feature_names
        self.threshold = model.manifest.decision_threshold

    def predict_proba(self, data: Any) -> np.ndarray:
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(np.atleast_2d(data), columns=self.names)
        elif list(data.columns) != self.names:
            data = data[self.names]
        categorical = {
            name: str
            for name, dtype in data.dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype)
        }
        if categorical:
            data = data.astype(categorical)
        p = np.asarray(self.predictor.probability(data), dtype=float)
        t = self.threshold
        score = np.where(p < t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1.0 - t))
        return np.column_stack([1.0 - score, score])

    def predict(self, data: Any) -> np.ndarray:
        return (self.predict_proba(data)[:, 1] >= 0.5).astype(int)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_BudgetExceeded` in this thread after ``seconds`` (main thread only;
    elsewhere a no-op), and again every :data:`_RE_ALARM_SECONDS` until the block is left:
    a handler's exception can be swallowed when it fires inside C code that clears errors
    (``__del__``, dict lookups), and a one-shot alarm would then let DiCE run forever. The
    previous SIGALRM handler and interval timer are restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = True

    def alarm(signum: int, frame: Any) -> None:
        if armed:
            raise _BudgetExceeded

    previous = signal.signal(signal.SIGALRM, alarm)
    started = time.monotonic()
    outer: tuple[float, float] = (0.0, 0.0)
    try:
        outer = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-4), _RE_ALARM_SECONDS)
        yield
    finally:
        while armed:  # an alarm may still land before the flag is down
            with contextlib.suppress(_BudgetExceeded):
                armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer[0] > 0:  # someone else's timer: give it back what is left of it
            left = max(outer[0] - (time.monotonic() - started), 1e-4)
            signal.setitimer(signal.ITIMER_REAL, left, outer[1])


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs DiCE draws from (numpy's and ``random``), then restore them."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """DiCE prints progress bars and messages and pandas warnings; none reach the logs."""
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        yield


def _dice_range(domain: _Domain) -> list[Any]:
    return list(domain.categories) if domain.categories else [domain.low, domain.high]


def _plain(feature: Feature, value: Any) -> Any:
    if feature.type is FeatureType.numeric:
        number = float(value)
        return int(round(number)) if feature.integer and number.is_integer() else number
    return str(value)


def _same_number(value: float, was: float) -> bool:
    # DiCE keeps non-integer numerics as float32: an unchanged value comes back rounded.
    return abs(value - was) <= 1e-6 * max(1.0, abs(was))


def _positive(width: float) -> float:
    return width if width > 0 and math.isfinite(width) else 1.0


def _decimals(values: np.ndarray) -> int:
    for places in range(MAX_PRECISION + 1):
        if np.allclose(np.round(values, places), values, rtol=0, atol=1e-9):
            return places
    return MAX_PRECISION


def _sub_seed(seed: int, search: int) -> int:
    """A different, reproducible seed for each DiCE search of one applicant."""
    return int(np.random.SeedSequence([seed, search]).generate_state(1)[0])
