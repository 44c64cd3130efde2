"""Model-agnostic Shapley estimate by antithetic permutation sampling in raw feature space.

Each permutation walks from a background row to the instance one feature at a time; its
marginal contributions telescope, so every estimate is exactly additive. A permutation is
paired with its reverse (antithetic), which cancels much of the variance; the standard
error is taken across pairs and widened by the Student-t factor for that many pairs, so
that contribution ± 1.96 x std_error is a 95% interval even with few permutations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from service.explainers.shap.attribution import Attributions
from service.registry.distinct import distinct_coded_rows
from service.registry.predictors import Predictor

DEFAULT_BACKGROUND_ROWS = 50


class PermutationShap:
    def __init__(
        self, predictor: Predictor, background: pd.DataFrame, space: str, permutations: int
    ) -> None:
        self.predictor, self.space, self.permutations = predictor, space, permutations
        self.background = background.reset_index(drop=True)
        self.rows = len(self.background)
        self._background_codes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.base_value = float(np.mean(predictor.output(self.background, space)))

    def explain_row(self, row: pd.DataFrame, seed: int) -> Attributions:
        """Estimate for one instance (a one-row frame)."""
        rng = np.random.default_rng(seed)
        n_features = row.shape[1]
        orders = []
        for _ in range(self.permutations // 2):
            order = rng.permutation(n_features)
            orders += [order, order[::-1]]
        # take_instance[p, k, j]: at step k of permutation p, feature j comes from the instance.
        position = np.empty((len(orders), n_features), dtype=int)
        for p, order in enumerate(orders):
            position[p, order] = np.arange(n_features)
        steps = np.arange(n_features + 1)
        take_instance = position[:, None, :] < steps[None, :, None]
        outputs = self._evaluate(row, take_instance)  # (P, M + 1) mean over background
        gains = np.diff(outputs, axis=1)  # gain of the k-th feature added
        per_permutation = np.take_along_axis(gains, position, axis=1)
        pairs = per_permutation.reshape(-1, 2, n_features).mean(axis=1)
        values = pairs.mean(axis=0)
        std_error = None
        if len(pairs) > 1:
            small_sample = stats.t.ppf(0.975, len(pairs) - 1) / stats.norm.ppf(0.975)
            std_error = small_sample * pairs.std(axis=0, ddof=1) / np.sqrt(len(pairs))
        return Attributions(
            values=values[None, :],
            base_value=float(outputs[0, 0]),
            std_error=None if std_error is None else std_error[None, :],
        )

    def _evaluate(self, row: pd.DataFrame, take_instance: np.ndarray) -> np.ndarray:
        n_perm, n_steps, n_features = take_instance.shape
        n_bg = len(self.background)
        mask = np.repeat(take_instance.reshape(-1, n_features), n_bg, axis=0)
        background_row = np.tile(np.arange(n_bg), n_perm * n_steps)
        kept: np.ndarray | slice = slice(None)
        inverse = None
        if self.predictor.prefers_distinct_rows:
            found = self._distinct(row, mask, background_row)
            if found is not None:
                kept, inverse = found
        hybrid = {}
        for j, name in enumerate(row.columns):
            background = self.background[name].to_numpy()[background_row[kept]]
            hybrid[name] = np.where(mask[kept, j], row[name].iloc[0], background)
        frame = pd.DataFrame(hybrid).astype(self.background.dtypes.to_dict())
        out = self.predictor.output(frame, self.space)
        if inverse is not None:
            out = out[inverse]
        return out.reshape(n_perm, n_steps, n_bg).mean(axis=2)

    def _distinct(
        self, row: pd.DataFrame, mask: np.ndarray, background_row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The distinct hybrid rows, found from the codes of each column's few candidate
        values (the background's and the instance's) rather than by hashing every cell."""
        if self._background_codes is None:
            self._background_codes = {
                name: pd.factorize(self.background[name].to_numpy(), use_na_sentinel=False)
                for name in self.background.columns
            }
        coded = []
        for j, name in enumerate(row.columns):
            codes, uniques = self._background_codes[name]
            # the instance's code: a background value's when equal to one, else a new one
            candidates = np.append(uniques, row[name].iloc[0])
            instance = pd.factorize(candidates, use_na_sentinel=False)[0][-1]
            column = np.where(mask[:, j], instance, codes[background_row])
            coded.append((column, len(candidates)))
        return distinct_coded_rows(coded, len(mask))
