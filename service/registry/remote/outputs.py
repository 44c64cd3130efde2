"""What a remote model's answer means: the endpoint's output columns read as the
favourable class's probability or log-odds (or a regression value), per the manifest.

A classifier's answer has one column per class in the manifest's ``classes`` order, or
one column for ``classes[1]``; probabilities must lie in [0, 1]. A regression answer has
one column. Anything else is a :class:`MalformedResponse` (retried like a failed call).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from service.registry.manifest import Manifest, Task
from service.registry.remote.codec import MalformedResponse
from service.registry.remote.spec import RemoteArtifact, RemoteOutput

PROBABILITY_SLACK = 1e-9


class OutputReader:
    def __init__(self, manifest: Manifest, artifact: RemoteArtifact) -> None:
        self.is_classifier = manifest.task is Task.binary_classification
        self.kind = artifact.output
        classes = manifest.classes or []
        self.favourable = classes.index(manifest.favourable_class) if self.is_classifier else 0
        self.sign = 1.0 if self.favourable == 1 else -1.0

    def check(self, values: np.ndarray) -> None:
        """Refuse answers of the wrong width, or probabilities outside [0, 1]."""
        columns = values.shape[1]
        if not self.is_classifier:
            if columns != 1:
                raise MalformedResponse(f"a regression answer has 1 column, not {columns}")
            return
        if columns not in (1, 2):
            raise MalformedResponse(
                f"a binary classifier's answer has 1 or 2 columns (one per class), not {columns}"
            )
        if self.kind is RemoteOutput.probability and (
            values.min() < -PROBABILITY_SLACK or values.max() > 1 + PROBABILITY_SLACK
        ):
            raise MalformedResponse(
                "probabilities outside [0, 1]: if the endpoint answers margins (log-odds), "
                "declare artifact.output: margin"
            )

    def probability(self, values: np.ndarray) -> np.ndarray:
        """Probability of the favourable class (classifiers) or the value (regression)."""
        if not self.is_classifier:
            return values[:, 0]
        if self.kind is RemoteOutput.margin:
            return expit(self.margin(values))
        if values.shape[1] == 2:
            p = values[:, self.favourable]
        else:
            p = values[:, 0] if self.favourable == 1 else 1.0 - values[:, 0]
        return np.clip(p, 0.0, 1.0)

    def margin(self, values: np.ndarray) -> np.ndarray:
        """Log-odds of the favourable class (classifiers) or the value (regression)."""
        if not self.is_classifier:
            return values[:, 0]
        if self.kind is RemoteOutput.probability:
            return logit(np.clip(self.probability(values), 1e-15, 1 - 1e-15))
        if values.shape[1] == 2:  # one score per class: the favourable one's lead
            return values[:, self.favourable] - values[:, 1 - self.favourable]
        return self.sign * values[:, 0]
