"""Anchors (Ribeiro, Singh & Guestrin, AAAI 2018) for tabular classifiers.

An anchor is a rule A over the instance's own feature values such that the model gives
(nearly) every perturbed sample satisfying A the instance's label:
precision(A) = P(label(z) = label(x) | z ~ D(. | A)) >= threshold, where a label is the
favourable class when P(favourable) >= the manifest's decision threshold. Among the
shortest rules found to reach the threshold, the one with the largest coverage (share of
reference rows satisfying it) is returned; if none is found within ``max_anchor_size``
conditions, the most precise rule of the beams is returned with ``threshold_met: false``.
An empty rule (no condition) is returned when the label holds without any.

Conditions, one per feature, all true for the instance:
- categorical/ordinal: ``feature = instance's category``;
- numeric: an interval whose ends are edges of the feature's discretisation
  (``service/explainers/anchor_bins.py``: cut points from the request or the manifest,
  else ``quantile_bins`` quantiles of the reference data; by default quartiles, lime's
  discretiser and the bins anchor-exp uses): ``f <= q``, ``f > q`` or ``q1 < f <= q2``,
  containing the instance's value. A rule's length is its number of conditions
  (features). A model driven by a threshold that falls inside a bin cannot reach a high
  precision with that bin: finer quantiles or a cut point at the threshold let it.

D(. | A), the perturbation distribution: a reference row drawn uniformly (bootstrap), with
every categorical condition's feature set to the instance's category and every numeric
condition's feature, when outside the interval, replaced by a reference value of that
feature drawn uniformly from those inside the interval (the instance's own value when the
reference has none). This is anchor-exp's ``sample_from_train``.

Search: beam search by rule length. KL-LUCB (Kaufmann & Kalyanakrishnan 2013, with
anchor-exp's constants) picks the ``beam_size`` most precise rules of each length to
within ``epsilon`` with confidence 1 - ``delta``; each picked rule then gets at least
ACCEPT_SAMPLES samples and is sampled until its precision is clearly above or below the
threshold; it is accepted when its estimate is >= threshold and its KL lower confidence
bound is > threshold - EPSILON_STOP (anchor-exp's acceptance rule, which is what
``threshold_met`` reports). Unlike anchor-exp:
- every candidate rule is estimated only from samples of its own D(. | A), kept across
  rounds and lengths; samples are never borrowed from a parent rule (a parent's samples
  that happen to satisfy the child are not distributed as D(. | child), which is why
  anchor-exp's precisions are optimistic);
- each round labels all the samples it needs in one model call: all new candidates at
  once; in KL-LUCB the two arms of classic LUCB plus up to ROUND_ARMS - 2 further arms
  whose confidence bounds still straddle the split, with per-arm batches that double
  from round to round (sampling more never weakens KL-LUCB's guarantee, it saves rounds);
- the candidates sampled in one round share their random numbers (common random
  numbers: each rule's samples remain independent draws from its own D(. | A)), so rules
  whose conditions agree on a sample produce the same row, and a search labels each
  distinct row once (a memo of up to MEMO_LIMIT rows; the model is deterministic);
- :meth:`AnchorExplainer.explain` runs the searches of up to WINDOW rows in lock step,
  one model call per round for all of them; each row has its own random stream and memo,
  so its explanation is the same whatever other rows share the frame.

``precision`` is the search's estimate of the returned rule (the rule was selected on
part of those samples, so it can be slightly optimistic); ``evidence.precision_fresh``
re-measures it on ``fresh_samples`` new samples of D(. | A), labelled by the model
itself (not from the memo), that the search never saw.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from itertools import repeat
from typing import Annotated, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from service.errors import invalid
from service.explainers.anchor_bins import DEFAULT_QUANTILE_BINS, check_cut_points, numeric_edges
from service.explainers.base import Explainer, MethodOptions, checked
from service.registry.loaded import LoadedModel
from service.registry.manifest import FeatureType

# anchor-exp's tolerance when settling a chosen rule's precision against the threshold.
EPSILON_STOP = 0.05
# At most this many candidate rules get new samples in one KL-LUCB round.
ROUND_ARMS = 32
# Round t (from 1) of one KL-LUCB gives each picked arm batch_size * 2**min(t, GROWTH_CAP).
GROWTH_CAP = 3
# A rule is accepted on at least this many samples.
ACCEPT_SAMPLES = 1000
# A rule is never sampled beyond this; rounds stop once the contested arms reach it.
MAX_ARM_SAMPLES = 50_000
# explain() runs this many searches in lock step (bounds the memory of their memos).
WINDOW = 16
# Distinct rows whose label one search remembers.
MEMO_LIMIT = 100_000
COVERAGE_SEED = 0
CutPoints = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1, max_length=100)
]


class AnchorOptions(MethodOptions):
    """How anchors are searched. Defaults: anchor-exp's, with a beam of 2."""

    threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Precision a rule must reach: share of its perturbed samples the model "
        "gives the instance's label.",
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
    quantile_bins: int = Field(
        DEFAULT_QUANTILE_BINS,
        ge=2,
        le=100,
        description="Numeric features without cut points are cut at this many quantile bins "
        "of the reference data (4: quartiles).",
    )
    cut_points: dict[str, CutPoints] | None = Field(
        None,
        description="Per numeric feature: the interval edges rules may use (e.g. a policy "
        "threshold; in any order), instead of the manifest's cut_points or the quantiles.",
        json_schema_extra=checked("numeric features of the model, finite edges"),
    )

    @field_validator("cut_points")
    @classmethod
    def _cut_points(cls, value: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
        # a set of edges: their order and repeats carry no meaning
        return None if value is None else {k: sorted(set(v)) for k, v in value.items()}


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
    calls: int
    rows: int
    samples: int


class AnchorExplainer(Explainer):
    method: ClassVar[str] = "anchor"
    Options = AnchorOptions
    options: AnchorOptions

    def __init__(self, model: LoadedModel, options: AnchorOptions) -> None:  # type: ignore[override]
        super().__init__(model, options)
        if not model.predictor.is_classifier:
            raise invalid(
                ("body", "methods"), "anchors explain classifiers; this model is a regression"
            )
        self.features = model.manifest.features
        self.numeric = [f.type is FeatureType.numeric for f in self.features]
        self.categories = [
            None if numeric else np.asarray(f.categories, dtype=object)
            for f, numeric in zip(self.features, self.numeric, strict=True)
        ]
        self.codes = [
            None if numeric else {c: i for i, c in enumerate(f.categories or [])}
            for f, numeric in zip(self.features, self.numeric, strict=True)
        ]
        check_cut_points(model.manifest, options.cut_points)
        reference = model.reference
        values = self._encode(reference)
        self.edges, self.discretisation = numeric_edges(
            model.manifest, values, options.quantile_bins, options.cut_points
        )
        # Rows are sampled as indices into each column's values: numeric columns index
        # their distinct reference values (one more index: the instance's own value when
        # the reference lacks it), categorical columns their category codes.
        self.vocab = [
            np.unique(values[:, j]) if numeric else None for j, numeric in enumerate(self.numeric)
        ]
        widest = max(
            len(v) + 1 if v is not None else len(c)  # type: ignore[arg-type]
            for v, c in zip(self.vocab, self.categories, strict=True)
        )
        self.index_dtype = np.uint16 if widest < 2**16 else np.uint32
        self.reference = self._index(values)
        if len(reference) > options.coverage_samples:
            rows = np.random.default_rng(COVERAGE_SEED).choice(
                len(reference), options.coverage_samples, replace=False
            )
            self.coverage_rows = self.reference[np.sort(rows)]
        else:
            self.coverage_rows = self.reference
        self._inside: dict[_Condition, np.ndarray] = {}
        self._pools: dict[_Condition, np.ndarray] = {}
        self._covered: dict[_Condition, np.ndarray] = {}
        self._cast: dict[str, Any] | None = None
        probe = self._frame(values[:1])
        cast = {c: t for c, t in reference.dtypes.items() if probe[c].dtype != t}
        self._cast = cast or None

    @classmethod
    def supports(cls, model: LoadedModel) -> bool:
        return bool(model.predictor.is_classifier)

    # --- representations: values (numeric values and category codes, float) and indices
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
                row = next(i for i, v in enumerate(values) if v not in codes)
                raise invalid(
                    ("body", "instances", row, feature.name),
                    f"{exc.args[0]!r} is not one of the manifest's categories",
                ) from None
        return out

    def _index(self, values: np.ndarray) -> np.ndarray:
        """Indices of values; a numeric value absent from the reference gets the extra index."""
        out = np.empty(values.shape, dtype=self.index_dtype)
        for j, vocab in enumerate(self.vocab):
            if vocab is None:
                out[:, j] = values[:, j]
                continue
            position = np.searchsorted(vocab, values[:, j])
            found = position < len(vocab)
            found[found] = vocab[position[found]] == values[found, j]
            out[:, j] = np.where(found, position, len(vocab))
        return out

    def _frame(self, values: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, feature in enumerate(self.features):
            categories = self.categories[j]
            if categories is None:
                data[feature.name] = values[:, j]
            else:
                data[feature.name] = categories[values[:, j].astype(np.intp)]
        frame = pd.DataFrame(data)
        return frame.astype(self._cast) if self._cast else frame

    def _favourable(self, values: np.ndarray) -> np.ndarray:
        """One model call: whether each row is given the favourable class."""
        probability = self.model.predictor.probability(self._frame(values))
        return np.asarray(probability >= self.model.manifest.decision_threshold)

    # --- conditions
    def conditions(self, x: np.ndarray) -> list[_Condition]:
        """Every single-feature condition the instance (values) satisfies, in feature order."""
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

    def inside(self, c: _Condition) -> np.ndarray:
        """Per value index of a numeric column: inside the interval (the instance's extra
        index always is: conditions are built around the instance)."""
        table = self._inside.get(c)
        if table is None:
            low, high = self.bounds(c)
            vocab = self.vocab[c.feature]
            assert vocab is not None
            table = self._inside[c] = np.append((vocab > low) & (vocab <= high), True)
        return table

    def pool(self, c: _Condition) -> np.ndarray:
        """The reference's value indices inside a numeric condition (with repeats)."""
        pool = self._pools.get(c)
        if pool is None:
            column = self.reference[:, c.feature]
            pool = self._pools[c] = column[self.inside(c)[column]]
        return pool

    def _satisfied(self, c: _Condition) -> np.ndarray:
        mask = self._covered.get(c)
        if mask is None:
            column = self.coverage_rows[:, c.feature]
            mask = column == c.code if c.code >= 0 else self.inside(c)[column]
            self._covered[c] = mask
        return mask

    def coverage(self, conditions: Sequence[_Condition]) -> float:
        if not conditions:
            return 1.0
        mask = np.logical_and.reduce([self._satisfied(c) for c in conditions])
        return float(np.mean(mask))

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
        """Run up to WINDOW searches in lock step: one model call per round for all."""
        outcomes: list[_Outcome | None] = [None] * len(searches)
        pending: dict[int, np.ndarray] = {}
        waiting = list(range(len(searches)))[::-1]

        def advance(i: int, sent: np.ndarray | None) -> None:
            try:
                pending[i] = searches[i].send(sent)  # type: ignore[arg-type]
            except StopIteration as stop:
                outcomes[i] = stop.value
                pending.pop(i, None)

        def fill() -> None:
            while waiting and len(pending) < WINDOW:
                advance(waiting.pop(), None)

        fill()
        while pending:
            order = sorted(pending)
            favourable = self._favourable(np.concatenate([pending[i] for i in order]))
            start = 0
            for i in order:
                size = len(pending[i])
                advance(i, favourable[start : start + size])
                start += size
            fill()
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _format(self, outcome: _Outcome, favourable: bool, seed: int) -> dict[str, Any]:
        manifest = self.model.manifest
        rule = outcome.rule
        conditions = [self._condition_json(c) for c in rule.conditions]
        protected = [
            self.features[c.feature].name
            for c in rule.conditions
            if self.features[c.feature].protected
        ]
        options = self.options
        return {
            "rule": conditions,
            "text": " AND ".join(c["text"] for c in conditions),
            "precision": rule.precision,
            "coverage": rule.coverage,
            "label": manifest.favourable_class if favourable else manifest.unfavourable_class,
            "evidence": {
                "precision_fresh": outcome.fresh_precision,
                "fresh_samples": options.fresh_samples,
                "samples": rule.n,
                "search_samples": outcome.samples,
                "model_calls": outcome.calls,
                "model_rows": outcome.rows,
                "threshold": options.threshold,
                "threshold_met": outcome.met,
                "beam_size": options.beam_size,
                "delta": options.delta,
                "epsilon": options.epsilon,
                "seed": seed,
                "coverage_rows": int(self.coverage_rows.shape[0]),
                "protected_features_in_rule": protected,
                "discretisation": self.discretisation,
            },
        }

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
    """The search for one instance, as a generator: it yields the rows (values) it needs
    labelled and receives, for each, whether the model gives it the favourable class.

    Samples are index rows; a row already labelled in this search is not sent again
    (the model is deterministic), so only distinct rows cost model time."""

    def __init__(
        self,
        explainer: AnchorExplainer,
        x: np.ndarray,
        favourable: bool,
        rng: np.random.Generator,
    ) -> None:
        self.explainer, self.favourable, self.rng = explainer, favourable, rng
        self.options = explainer.options
        self.x = explainer._index(x[None, :])[0]
        self.decode = [
            None if vocab is None else np.append(vocab, x[j])
            for j, vocab in enumerate(explainer.vocab)
        ]
        self.singles = explainer.conditions(x)
        self.rules: dict[tuple[_Condition, ...], _Rule] = {}
        self.memo: dict[bytes, bool] = {}
        self.calls = 1  # the instance's own prediction
        self.rows = 1
        self.samples = 0

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
        yield from self.sample([empty, *frontier], batch)
        empty_level = np.log(1.0 / options.delta)
        yield from self.settle([empty], empty_level)
        found: _Rule | None = empty if self.valid(empty, empty_level) else None
        beams: list[_Rule] = []
        max_size = options.max_anchor_size or len(self.explainer.features)
        settle_level = np.log((1 + (options.beam_size - 1) * len(self.singles)) / options.delta)
        size = 1
        while found is None and frontier and size <= max_size:
            new = [r for r in frontier if r.n == 0]
            if new:
                yield from self.sample(new, batch)
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
        # fresh samples, labelled by the model itself (not from the search's memo)
        fresh = self.draw(found.conditions, options.fresh_samples)
        labels = yield self.values(fresh)
        self.calls += 1
        self.rows += len(labels)
        fresh_precision = float(np.mean(labels == self.favourable))
        return _Outcome(found, met, fresh_precision, self.calls, self.rows, self.samples)

    # --- sampling
    def randomness(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The random numbers behind n samples: reference rows, and per feature a uniform
        that picks the replacement value when a condition moves the feature."""
        reference = self.explainer.reference
        return self.rng.integers(0, len(reference), n), self.rng.random((n, reference.shape[1]))

    def draw(
        self,
        conditions: Sequence[_Condition],
        n: int,
        randomness: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """n samples of D(. | rule), as index rows. Rules sampled in one round share their
        random numbers (each rule's samples are still independent draws of its own
        D(. | rule)), so where their conditions agree they produce the same rows, which
        are labelled once."""
        explainer = self.explainer
        index, uniform = randomness if randomness is not None else self.randomness(n)
        rows = explainer.reference[index[:n]]
        for c in conditions:
            column = rows[:, c.feature]
            if c.code >= 0:
                column[:] = c.code
                continue
            outside = ~explainer.inside(c)[column]
            if outside.any():
                pool = explainer.pool(c)
                if pool.size:
                    picks = (uniform[:n, c.feature][outside] * pool.size).astype(np.intp)
                    column[outside] = pool[picks]
                else:
                    column[outside] = self.x[c.feature]
        return rows

    def values(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(rows.shape)
        for j, decode in enumerate(self.decode):
            out[:, j] = rows[:, j] if decode is None else decode[rows[:, j]]
        return out

    def label(self, rows: np.ndarray) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
        """Whether each row gets the instance's label; rows not seen before in one call."""
        width = rows.dtype.itemsize * rows.shape[1]
        keys = np.ascontiguousarray(rows).view(np.dtype((np.void, width))).ravel().tolist()
        memo = self.memo
        # 1/0: remembered label is the instance's or not; 2: never labelled
        same = np.fromiter(map(memo.get, keys, repeat(2)), dtype=np.int8, count=len(keys))
        missing = np.flatnonzero(same == 2)
        if missing.size:
            distinct: dict[bytes, int] = {}
            slot = np.array([distinct.setdefault(keys[i], len(distinct)) for i in missing.tolist()])
            first = np.empty(len(distinct), dtype=np.intp)
            first[slot[::-1]] = missing[::-1]  # each distinct row's first occurrence
            favourable = yield self.values(rows[first])
            self.calls += 1
            self.rows += len(favourable)
            labelled = favourable == self.favourable
            same[missing] = labelled[slot]
            if len(memo) + len(distinct) <= MEMO_LIMIT:
                memo.update(zip(distinct, labelled.tolist(), strict=True))
        self.samples += len(keys)
        return same.astype(bool)

    def sample(
        self, rules: Sequence[_Rule], n: int | Sequence[int]
    ) -> Generator[np.ndarray, np.ndarray, None]:
        """n (or n[i]) new samples for each rule, labelled in at most one model call."""
        counts = [n] * len(rules) if isinstance(n, int) else list(n)
        shared = self.randomness(max(counts))
        rows = np.concatenate(
            [self.draw(r.conditions, k, shared) for r, k in zip(rules, counts, strict=True)]
        )
        same = yield from self.label(rows)
        starts = np.cumsum([0, *counts[:-1]])
        hits = np.add.reduceat(same.astype(np.int64), starts)
        for r, k, h in zip(rules, counts, hits, strict=True):
            r.n += k
            r.hits += int(h)

    # --- decisions
    def valid(self, r: _Rule, level: float) -> bool:
        threshold = self.options.threshold
        lower = _kl_lower(np.array([r.precision]), np.array([level / r.n]))[0]
        return r.precision >= threshold and lower > threshold - EPSILON_STOP

    def settle(
        self, rules: Sequence[_Rule], level: float
    ) -> Generator[np.ndarray, np.ndarray, None]:
        """Sample until each rule's precision is clearly above or below the threshold
        (anchor-exp's stopping rule with its epsilon_stop); a rule that may be accepted
        first gets at least ACCEPT_SAMPLES samples, most of them drawn after it was
        chosen, which dilutes the optimism of the estimate that chose it."""
        threshold, batch = self.options.threshold, self.options.batch_size
        while True:
            n = np.array([r.n for r in rules], dtype=float)
            means = np.array([r.precision for r in rules])
            lower = _kl_lower(means, level / n)
            upper = _kl_upper(means, level / n)
            short = (means >= threshold) & (n < ACCEPT_SAMPLES)
            open_ = ((means >= threshold) & (lower < threshold - EPSILON_STOP)) | (
                (means < threshold) & (upper >= threshold + EPSILON_STOP)
            )
            open_ = (open_ | short) & (n < MAX_ARM_SAMPLES)
            if not open_.any():
                return
            picked = np.flatnonzero(open_)
            counts = [max(batch, int(ACCEPT_SAMPLES - n[i])) if short[i] else batch for i in picked]
            yield from self.sample([rules[i] for i in picked], counts)

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
            pair = [int(rest[np.argmax(upper)]), int(best[np.argmin(lower)])]
            contest = sorted(
                [(float(strongest - lower[k]), int(best[k])) for k in range(len(best))]
                + [(float(upper[k] - weakest), int(rest[k])) for k in range(len(rest))],
                key=lambda item: (-item[0], item[1]),
            )
            extra = [i for gap, i in contest if gap > epsilon and i not in pair]
            picked = [i for i in pair + extra[: ROUND_ARMS - 2] if arms[i].n < MAX_ARM_SAMPLES]
            if not picked:
                break
            growth = 2 ** min(t, GROWTH_CAP)
            yield from self.sample([arms[i] for i in picked], self.options.batch_size * growth)
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
