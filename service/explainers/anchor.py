"""Anchors (Ribeiro, Singh & Guestrin, AAAI 2018) for tabular classifiers.

An anchor is a rule A over the instance's own feature values such that the model gives
(nearly) every perturbed sample satisfying A the instance's label:
precision(A) = P(label(z) = label(x) | z ~ D(. | A)) >= threshold. Among the shortest such
rules the one with the largest coverage (share of reference rows satisfying it) is
returned; if none is found within ``max_anchor_size`` conditions, the most precise rule of
the beams is returned with ``threshold_met: false``.

Conditions, one per feature, all true for the instance:
- categorical/ordinal: ``feature = instance's category``;
- numeric: an interval whose ends are quartile edges of the reference data (lime's
  quartile discretiser, the bins anchor-exp uses): ``f <= q``, ``f > q`` or
  ``q1 < f <= q2``, containing the instance's value.

D(. | A), the perturbation distribution: a reference row drawn uniformly (bootstrap), with
every categorical condition's feature set to the instance's category and every numeric
condition's feature, when outside the interval, replaced by a reference value of that
feature drawn uniformly from those inside the interval (the instance's own value when the
reference has none). This is anchor-exp's ``sample_from_train``.

Search: beam search by rule length with KL-LUCB (Kaufmann & Kalyanakrishnan 2013; the
constants of anchor-exp) choosing the ``beam_size`` most precise rules of each length,
then each chosen rule's precision is settled against the threshold (anchor-exp's
``epsilon_stop`` rule). Unlike anchor-exp:
- every candidate rule has its own cache of samples drawn from its own D(. | A), kept
  across rounds and lengths; samples are never borrowed from a parent rule (a parent's
  samples that happen to satisfy the child are not distributed as D(. | child)), so the
  reported precision estimates what it claims;
- each round evaluates all the samples it needs in one model call: all new candidates at
  once, and in KL-LUCB the two arms of classic LUCB plus up to ``ROUND_ARMS - 2`` further
  arms whose confidence intervals still overlap the decision (more samples per arm never
  weaken the KL-LUCB guarantee, they only save rounds);
- :meth:`AnchorExplainer.explain` runs the searches of all rows in lock step, one model
  call per round for the whole frame; each row has its own random stream, so its
  explanation does not depend on the other rows of the frame;
- numeric conditions are intervals, so a rule's length is its number of features.

The returned precision is the search estimate (selected, so slightly optimistic);
``evidence.precision_fresh`` re-measures it on ``fresh_samples`` new samples of D(. | A)
that the search never saw.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field

from service.errors import invalid
from service.explainers.base import Explainer, MethodOptions
from service.registry.loaded import LoadedModel
from service.registry.manifest import FeatureType

# anchor-exp's tolerance when settling a chosen rule's precision against the threshold.
EPSILON_STOP = 0.05
# At most this many candidate rules get new samples in one KL-LUCB round.
ROUND_ARMS = 8
# A rule is never sampled beyond this; rounds stop once the contested arms reach it.
MAX_ARM_SAMPLES = 50_000
# New candidate rules start with batch_size // INITIAL_DIVISOR samples each.
INITIAL_DIVISOR = 1
COVERAGE_SEED = 0
QUARTILES = (25, 50, 75)


class AnchorOptions(MethodOptions):
    """How anchors are searched. Defaults: anchor-exp's, with a beam of 2."""

    threshold: float = Field(
        0.95, gt=0, le=1, description="Precision a rule must reach (share of samples kept)."
    )
    delta: float = Field(0.1, gt=0, lt=1, description="KL-LUCB confidence: 1 - delta.")
    epsilon: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="KL-LUCB tolerance when choosing the best rules (anchor-exp's tau).",
    )
    beam_size: int = Field(2, ge=1, le=20, description="Rules kept per rule length.")
    batch_size: int = Field(100, ge=10, le=10_000, description="Samples per rule per round.")
    max_anchor_size: int | None = Field(
        None, ge=1, le=500, description="Most conditions in a rule; default: all features."
    )
    coverage_samples: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Reference rows coverage is measured on (all when fewer).",
    )
    fresh_samples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="New samples on which the found rule's precision is re-measured.",
    )


class _Condition(NamedTuple):
    """One feature's condition: ``code`` >= 0 for a category, else the numeric interval
    (edges[low], edges[high]] with -1 for an open end."""

    feature: int
    code: int
    low: int
    high: int


class _Rule:
    """A candidate rule and the statistics of its own samples."""

    __slots__ = ("conditions", "coverage", "n", "hits")

    def __init__(self, conditions: tuple[_Condition, ...], coverage: float) -> None:
        self.conditions = conditions
        self.coverage = coverage
        self.n = 0
        self.hits = 0

    @property
    def precision(self) -> float:
        return self.hits / self.n if self.n else 0.0


class _Outcome(NamedTuple):
    rule: _Rule
    met: bool
    fresh_precision: float
    model_calls: int
    model_rows: int


class AnchorExplainer(Explainer):
    method: ClassVar[str] = "anchor"
    Options = AnchorOptions
    options: AnchorOptions

    def __init__(self, model: LoadedModel, options: AnchorOptions) -> None:  # type: ignore[override]
        super().__init__(model, options)
        manifest = model.manifest
        if not model.predictor.is_classifier:
            raise invalid(
                ("body", "methods"), "anchors explain classifiers; this model is a regression"
            )
        self.features = manifest.features
        self.numeric = [f.type is FeatureType.numeric for f in self.features]
        self.categories = [
            None if numeric else np.asarray(f.categories, dtype=object)
            for f, numeric in zip(self.features, self.numeric, strict=True)
        ]
        self.codes = [
            None if numeric else {c: i for i, c in enumerate(f.categories or [])}
            for f, numeric in zip(self.features, self.numeric, strict=True)
        ]
        reference = model.reference
        self.reference = self._encode(reference)
        self.edges = [
            np.unique(np.percentile(self.reference[:, j], QUARTILES)) if numeric else None
            for j, numeric in enumerate(self.numeric)
        ]
        if len(reference) > options.coverage_samples:
            rows = np.random.default_rng(COVERAGE_SEED).choice(
                len(reference), options.coverage_samples, replace=False
            )
            self.coverage_rows = self.reference[np.sort(rows)]
        else:
            self.coverage_rows = self.reference
        self._pools: dict[_Condition, np.ndarray] = {}
        self._covered: dict[_Condition, np.ndarray] = {}
        self._cast: dict[str, Any] | None = None
        probe = self._frame(self.reference[:1])
        cast = {c: t for c, t in reference.dtypes.items() if probe[c].dtype != t}
        self._cast = cast or None

    @classmethod
    def supports(cls, model: LoadedModel) -> bool:
        return bool(model.predictor.is_classifier)

    # --- encoding: one float matrix, numeric values and category codes
    def _encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.features)))
        for j, feature in enumerate(self.features):
            values = frame[feature.name]
            codes = self.codes[j]
            if codes is None:
                out[:, j] = values.to_numpy(dtype=float)
                continue
            try:
                out[:, j] = [codes[v] for v in values]
            except KeyError as exc:
                raise invalid(
                    ("body", "instances", feature.name), f"{exc.args[0]!r} is not a category"
                ) from None
        return out

    def _frame(self, rows: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, feature in enumerate(self.features):
            categories = self.categories[j]
            if categories is None:
                data[feature.name] = rows[:, j]
            else:
                data[feature.name] = categories[rows[:, j].astype(np.intp)]
        frame = pd.DataFrame(data)
        return frame.astype(self._cast) if self._cast else frame

    def _favourable(self, rows: np.ndarray) -> np.ndarray:
        """One model call: whether each row is given the favourable class."""
        probability = self.model.predictor.probability(self._frame(rows))
        return np.asarray(probability >= self.model.manifest.decision_threshold)

    # --- conditions
    def conditions(self, x: np.ndarray) -> list[_Condition]:
        """Every single-feature condition the instance satisfies, in feature order."""
        out = []
        for j, edges in enumerate(self.edges):
            if edges is None:
                out.append(_Condition(j, int(x[j]), -1, -1))
                continue
            b = int(np.searchsorted(edges, x[j]))  # bins (-inf, e0], (e0, e1], ...
            for low in [-1, *range(b)]:
                for high in [*range(b, len(edges)), -1]:
                    if low >= 0 or high >= 0:
                        out.append(_Condition(j, -1, low, high))
        return out

    def bounds(self, c: _Condition) -> tuple[float, float]:
        edges = self.edges[c.feature]
        assert edges is not None
        low = float(edges[c.low]) if c.low >= 0 else -np.inf
        high = float(edges[c.high]) if c.high >= 0 else np.inf
        return low, high

    def _pool(self, c: _Condition) -> np.ndarray:
        pool = self._pools.get(c)
        if pool is None:
            low, high = self.bounds(c)
            column = self.reference[:, c.feature]
            pool = self._pools[c] = column[(column > low) & (column <= high)]
        return pool

    def _satisfied(self, c: _Condition) -> np.ndarray:
        mask = self._covered.get(c)
        if mask is None:
            column = self.coverage_rows[:, c.feature]
            if c.code >= 0:
                mask = column == c.code
            else:
                low, high = self.bounds(c)
                mask = (column > low) & (column <= high)
            self._covered[c] = mask
        return mask

    def coverage(self, conditions: Sequence[_Condition]) -> float:
        if not conditions:
            return 1.0
        mask = np.logical_and.reduce([self._satisfied(c) for c in conditions])
        return float(np.mean(mask))

    def draw(
        self, conditions: Sequence[_Condition], n: int, rng: np.random.Generator, x: np.ndarray
    ) -> np.ndarray:
        """n samples of D(. | rule)."""
        rows = self.reference[rng.integers(0, len(self.reference), n)]
        for c in conditions:
            column = rows[:, c.feature]
            if c.code >= 0:
                column[:] = c.code
                continue
            low, high = self.bounds(c)
            outside = ~((column > low) & (column <= high))
            k = int(np.count_nonzero(outside))
            if k:
                pool = self._pool(c)
                column[outside] = pool[rng.integers(0, pool.size, k)] if pool.size else x[c.feature]
        return rows

    # --- explanation
    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        if len(frame) == 0:
            return []
        instances = self._encode(frame)
        labels = self._favourable(instances)
        searches = [
            _Search(self, instances[i], bool(labels[i]), np.random.default_rng(seeds[i])).run()
            for i in range(len(frame))
        ]
        outcomes = self._drive(searches)
        return [
            self._format(outcome, bool(labels[i]), seeds[i]) for i, outcome in enumerate(outcomes)
        ]

    def _drive(self, searches: list[Generator[np.ndarray, np.ndarray, _Outcome]]) -> list[_Outcome]:
        """Run the searches in lock step: each round, one model call for all their samples."""
        outcomes: list[_Outcome | None] = [None] * len(searches)
        pending: dict[int, np.ndarray] = {}

        def advance(i: int, sent: np.ndarray | None) -> None:
            try:
                pending[i] = searches[i].send(sent)  # type: ignore[arg-type]
            except StopIteration as stop:
                outcomes[i] = stop.value
                pending.pop(i, None)

        for i in range(len(searches)):
            advance(i, None)
        while pending:
            order = sorted(pending)
            favourable = self._favourable(np.concatenate([pending[i] for i in order]))
            start = 0
            for i in order:
                size = len(pending[i])
                advance(i, favourable[start : start + size])
                start += size
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _format(self, outcome: _Outcome, favourable: bool, seed: int) -> dict[str, Any]:
        manifest = self.model.manifest
        conditions = [self._condition_json(c) for c in outcome.rule.conditions]
        protected = [
            c["feature"] for c in conditions if self.features[self._index(c["feature"])].protected
        ]
        options = self.options
        return {
            "rule": conditions,
            "text": " AND ".join(c["text"] for c in conditions),
            "precision": outcome.rule.precision,
            "coverage": outcome.rule.coverage,
            "label": manifest.favourable_class if favourable else manifest.unfavourable_class,
            "evidence": {
                "precision_fresh": outcome.fresh_precision,
                "fresh_samples": options.fresh_samples,
                "samples": outcome.rule.n,
                "model_calls": outcome.model_calls,
                "model_rows": outcome.model_rows,
                "threshold": options.threshold,
                "threshold_met": outcome.met,
                "beam_size": options.beam_size,
                "delta": options.delta,
                "epsilon": options.epsilon,
                "seed": seed,
                "coverage_rows": int(self.coverage_rows.shape[0]),
                "protected_features_in_rule": protected,
            },
        }

    def _index(self, name: str) -> int:
        return next(j for j, f in enumerate(self.features) if f.name == name)

    def _condition_json(self, c: _Condition) -> dict[str, Any]:
        name = self.features[c.feature].name
        if c.code >= 0:
            value = str(self.categories[c.feature][c.code])  # type: ignore[index]
            return {"feature": name, "op": "=", "value": value, "text": f"{name} = {value}"}
        low, high = self.bounds(c)
        if c.low < 0:
            return {"feature": name, "op": "<=", "value": high, "text": f"{name} <= {_num(high)}"}
        if c.high < 0:
            return {"feature": name, "op": ">", "value": low, "text": f"{name} > {_num(low)}"}
        return {
            "feature": name,
            "op": "between",
            "values": [low, high],
            "text": f"{_num(low)} < {name} <= {_num(high)}",
        }


class _Search:
    """The search for one instance, as a generator: it yields the rows it needs labelled
    and receives, for each, whether the model gives it the favourable class."""

    def __init__(
        self,
        explainer: AnchorExplainer,
        x: np.ndarray,
        favourable: bool,
        rng: np.random.Generator,
    ) -> None:
        self.explainer, self.x, self.favourable, self.rng = explainer, x, favourable, rng
        self.options = explainer.options
        self.singles = explainer.conditions(x)
        self.rules: dict[tuple[_Condition, ...], _Rule] = {}
        self.calls = 1  # the instance's own prediction
        self.rows = 1

    def rule(self, conditions: tuple[_Condition, ...]) -> _Rule:
        found = self.rules.get(conditions)
        if found is None:
            found = self.rules[conditions] = _Rule(conditions, self.explainer.coverage(conditions))
        return found

    def run(self) -> Generator[np.ndarray, np.ndarray, _Outcome]:
        options = self.options
        batch = options.batch_size
        empty = self.rule(())
        frontier = [self.rule((c,)) for c in self.singles]
        first = max(1, batch // INITIAL_DIVISOR)
        yield from self.sample([empty, *frontier], first)
        yield from self.settle([empty], np.log(1.0 / options.delta))
        found: _Rule | None = empty if self.valid(empty, np.log(1.0 / options.delta)) else None
        beams: list[_Rule] = []
        max_size = options.max_anchor_size or len(self.explainer.features)
        settle_level = np.log((1 + (options.beam_size - 1) * len(self.singles)) / options.delta)
        size = 1
        while found is None and frontier and size <= max_size:
            fresh = [r for r in frontier if r.n == 0]
            if fresh:
                yield from self.sample(fresh, first)
            chosen = yield from self.lucb(frontier, min(options.beam_size, len(frontier)))
            beams.extend(chosen)
            yield from self.settle(chosen, settle_level)
            valid = [r for r in chosen if self.valid(r, settle_level)]
            if valid:
                found = max(valid, key=lambda r: (r.coverage, r.precision))
                break
            frontier = self.extend(chosen)
            size += 1
        met = found is not None
        if found is None:
            best = (yield from self.lucb(beams, 1)) if beams else [empty]
            found = best[0]
        fresh_rows = self.explainer.draw(found.conditions, options.fresh_samples, self.rng, self.x)
        labels = yield fresh_rows
        self.calls += 1
        self.rows += len(labels)
        fresh_precision = float(np.mean(labels == self.favourable))
        return _Outcome(found, met, fresh_precision, self.calls, self.rows)

    def sample(self, rules: Sequence[_Rule], n: int) -> Generator[np.ndarray, np.ndarray, None]:
        """n new samples for each rule, labelled in one model call."""
        draw, x, rng = self.explainer.draw, self.x, self.rng
        labels = yield np.concatenate([draw(r.conditions, n, rng, x) for r in rules])
        self.calls += 1
        self.rows += len(labels)
        hits = (labels == self.favourable).reshape(len(rules), n).sum(axis=1)
        for r, h in zip(rules, hits, strict=True):
            r.n += n
            r.hits += int(h)

    def valid(self, r: _Rule, level: float) -> bool:
        threshold = self.options.threshold
        lower = _kl_lower(np.array([r.precision]), np.array([level / r.n]))[0]
        return r.precision >= threshold and lower > threshold - EPSILON_STOP

    def settle(
        self, rules: Sequence[_Rule], level: float
    ) -> Generator[np.ndarray, np.ndarray, None]:
        """Sample until each rule's precision is clearly above or below the threshold
        (anchor-exp's stopping rule with its epsilon_stop)."""
        threshold = self.options.threshold
        while True:
            n = np.array([r.n for r in rules], dtype=float)
            means = np.array([r.precision for r in rules])
            lower = _kl_lower(means, level / n)
            upper = _kl_upper(means, level / n)
            open_ = ((means >= threshold) & (lower < threshold - EPSILON_STOP)) | (
                (means < threshold) & (upper >= threshold + EPSILON_STOP)
            )
            open_ &= n < MAX_ARM_SAMPLES
            if not open_.any():
                return
            yield from self.sample(
                [r for r, o in zip(rules, open_, strict=True) if o], self.options.batch_size
            )

    def lucb(
        self, arms: Sequence[_Rule], top: int
    ) -> Generator[np.ndarray, np.ndarray, list[_Rule]]:
        """KL-LUCB: the ``top`` most precise arms, to within epsilon with 1 - delta."""
        if len(arms) <= top:
            return list(arms)
        epsilon, delta = self.options.epsilon, self.options.delta
        t = 1
        while True:
            n = np.array([r.n for r in arms], dtype=float)
            means = np.array([r.precision for r in arms])
            order = np.argsort(-means, kind="stable")
            best, rest = order[:top], order[top:]
            level = _beta(len(arms), t, delta) / n
            lower = _kl_lower(means[best], level[best])
            upper = _kl_upper(means[rest], level[rest])
            weakest, strongest = float(lower.min()), float(upper.max())
            if strongest - weakest <= epsilon:
                break
            # the classic pair first, then other arms still contesting the split
            contest = [(strongest - lower[k], int(best[k])) for k in range(len(best))] + [
                (upper[k] - weakest, int(rest[k])) for k in range(len(rest))
            ]
            pair = {int(rest[np.argmax(upper)]), int(best[np.argmin(lower)])}
            extra = [
                i
                for gap, i in sorted(contest, key=lambda item: (-item[0], item[1]))
                if gap > epsilon and i not in pair
            ]
            picked = sorted(pair) + extra[: ROUND_ARMS - 2]
            picked = [i for i in picked if arms[i].n < MAX_ARM_SAMPLES]
            if not picked:
                break
            yield from self.sample([arms[i] for i in picked], self.options.batch_size)
            t += 1
        final = np.argsort(-np.array([r.precision for r in arms]), kind="stable")[:top]
        return [arms[int(i)] for i in final]

    def extend(self, beam: Sequence[_Rule]) -> list[_Rule]:
        """Every rule one condition longer than a beam rule, on a feature it lacks."""
        out: list[_Rule] = []
        seen: set[tuple[_Condition, ...]] = set()
        for parent in beam:
            used = {c.feature for c in parent.conditions}
            for c in self.singles:
                if c.feature in used:
                    continue
                key = tuple(sorted((*parent.conditions, c)))
                if key not in seen:
                    seen.add(key)
                    out.append(self.rule(key))
        return out


# --- KL confidence bounds of a Bernoulli mean (vectorised anchor-exp/KL-LUCB)
def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-16)
    q = np.clip(q, 1e-7, 1 - 1e-16)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def _kl_upper(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Largest q >= p with KL(p, q) <= level (16 bisection steps)."""
    low, high = p.copy(), np.minimum(p + np.sqrt(level / 2.0), 1.0)
    for _ in range(16):
        mid = (low + high) / 2.0
        over = _kl(p, mid) > level
        high = np.where(over, mid, high)
        low = np.where(over, low, mid)
    return high


def _kl_lower(p: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Smallest q <= p with KL(p, q) <= level (16 bisection steps)."""
    low, high = np.maximum(p - np.sqrt(level / 2.0), 0.0), p.copy()
    for _ in range(16):
        mid = (low + high) / 2.0
        over = _kl(p, mid) > level
        low = np.where(over, mid, low)
        high = np.where(over, high, mid)
    return low


def _beta(arms: int, t: int, delta: float) -> float:
    """KL-LUCB exploration rate (anchor-exp's constants alpha = 1.1, k = 405.5)."""
    temp = np.log(405.5 * arms * t**1.1 / delta)
    return float(temp + np.log(temp))


def _num(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(round(float(value), 6), trim="-")
