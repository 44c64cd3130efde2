"""The ``Predictor`` of a remote model: scores come from the model server.

It offers no tree, linear or design view, so explainers use their model-agnostic
algorithms (SHAP sampling or exact enumeration, LIME on sample frames, ...), each of
which already sends a whole sampling round to ``probability``/``margin`` in one call.

Before its answers are used, the endpoint is checked against the version's fingerprint:
the check rows are sent with the first call of a task (every task, or every
``recheck_seconds``): in the same request when that is a large sampling round, just
before it when it is small. A mismatch fails the call with
409 :class:`ModelChangedError`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.registry.distinct import distinct_rows
from service.registry.manifest import Manifest
from service.registry.predictors import Predictor
from service.registry.remote import policy, status
from service.registry.remote.client import RemoteClient
from service.registry.remote.codec import Codec
from service.registry.remote.errors import ModelChangedError, RemoteUnavailableError
from service.registry.remote.fingerprint import Fingerprint
from service.registry.remote.outputs import OutputReader
from service.registry.remote.spec import RemoteArtifact
from service.registry.remote.status import EndpointState

CHANGED = "the model behind the endpoint changed since registration"
PIGGYBACK_ROWS = 256  # from this size the check rows ride along in the same request


class RemotePredictor(Predictor):
    prefers_distinct_rows = True

    def __init__(
        self,
        manifest: Manifest,
        fingerprint: Fingerprint | None = None,
        check_frame: pd.DataFrame | None = None,
        version_path: Path | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        super().__init__(manifest)
        assert isinstance(manifest.artifact, RemoteArtifact)
        self.artifact = manifest.artifact
        self.reader = OutputReader(manifest, self.artifact)
        codec = Codec(manifest, self.artifact)
        self.client = RemoteClient(self.artifact, codec, self.reader.check, retry_seconds)
        self.fingerprint_record = fingerprint
        self.check_frame = None if check_frame is None else check_frame.reset_index(drop=True)
        self.version_path = version_path
        self.state = EndpointState.unknown
        self.detail: str | None = None
        self._checked_task: int | None = None
        self._checked_at = 0.0

    # --- scores
    def answers(self, frame: pd.DataFrame) -> np.ndarray:
        """The endpoint's raw outputs (rows x columns), checked against the fingerprint
        when a check is due (its rows go in the same call)."""
        if not self._check_due():
            return self._score(frame)
        assert self.check_frame is not None
        if len(frame) < PIGGYBACK_ROWS:
            # a small request goes alone, so the model sees the very batch a local model
            # would (a linear model's last bits depend on the batch's shape)
            self._verify(self._score(self.check_frame))
            return self._score(frame)
        combined = pd.concat([frame, self.check_frame], ignore_index=True)
        values = self._score(combined)
        self._verify(values[len(frame) :])
        return values[: len(frame)]

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self.reader.probability(self.answers(frame))

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.reader.margin(self.answers(frame))

    def output(self, frame: pd.DataFrame, space: str) -> np.ndarray:
        values = self.answers(frame)
        return (
            self.reader.probability(values)
            if space == "probability"
            else self.reader.margin(values)
        )

    def fingerprint(self) -> str | None:
        return None if self.fingerprint_record is None else self.fingerprint_record.digest

    # --- the endpoint's state
    def check_now(self) -> dict[str, Any]:
        """Check the endpoint against the fingerprint now; the status, never an error."""
        if self.check_frame is not None:
            try:
                self._verify(self._score(self.check_frame))
            except (ModelChangedError, RemoteUnavailableError):
                policy.forget_failure()  # recorded in the state, which is the answer
        return self.status()

    def status(self) -> dict[str, Any]:
        artifact, record = self.artifact, self.fingerprint_record
        shared = status.read(self.version_path) if self.version_path is not None else {}
        return {
            "protocol": artifact.protocol.value,
            "url": artifact.url,
            "model": artifact.model,
            "model_version": artifact.version,
            "output": artifact.output.value,
            "fingerprint": None if record is None else record.digest,
            "fingerprint_rows": None if record is None else int(record.outputs.shape[0]),
            "state": shared.get("state", self.state.value),
            "detail": shared.get("detail", self.detail),
            "checked_at": shared.get("checked_at"),
        }

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        distinct, inverse = distinct_rows(frame)
        try:
            values = self.client.score(distinct)
            return values if inverse is None else values[inverse]
        except RemoteUnavailableError as exc:
            if self.state is not EndpointState.changed:
                self._set(EndpointState.unreachable, exc.message)
            raise

    def _check_due(self) -> bool:
        if self.fingerprint_record is None or self.check_frame is None:
            return False  # a candidate being registered: nothing to compare with yet
        if self._checked_task is None or self.state is not EndpointState.ok:
            return True
        recheck = policy.policy().recheck_seconds
        if recheck <= 0:
            return self._checked_task != policy.task_number()
        return time.monotonic() - self._checked_at >= recheck

    def _verify(self, answers: np.ndarray) -> None:
        assert self.fingerprint_record is not None
        self._checked_task, self._checked_at = policy.task_number(), time.monotonic()
        difference = self.fingerprint_record.difference(answers)
        if difference is None:
            self._set(EndpointState.ok, None)
            return
        message = (
            f"{CHANGED}: {self.artifact.endpoint}: {difference} than fingerprint "
            f"{self.fingerprint_record.digest[:19]}; register the new model as a new version"
        )
        self._set(EndpointState.changed, message)
        error = ModelChangedError(message)
        policy.record_failure(error)
        raise error

    def _set(self, state: EndpointState, detail: str | None) -> None:
        self.state, self.detail = state, detail
        if self.version_path is not None:
            status.record(self.version_path, state, detail)
