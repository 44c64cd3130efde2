"""How long remote calls may be retried and how often the fingerprint is re-checked, and
the window of the task a worker is running (its deadline and any endpoint failure in it).

A worker sets the policy once (:func:`configure`, from the service settings) and brackets
every task with :func:`begin_task` / :func:`end_task`. Retries stop before the task's hard
time limit, so a dead endpoint fails the job with its own reason, not with a time-out;
and a failure that an explainer swallowed (DiCE reports errors as "no counterfactual")
still fails the task at :func:`end_task`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from service.errors import ServiceError

MARGIN_SECONDS = 2.0  # left of a task's time limit when retries give up


@dataclass(frozen=True)
class RemotePolicy:
    retry_seconds: float = 20.0  # how long one call is retried with backoff
    recheck_seconds: float = 0.0  # 0: re-check the fingerprint in every task
    time_limit: float = math.inf  # the hard limit of one task


@dataclass
class _Task:
    number: int = 0
    deadline: float = math.inf
    failure: ServiceError | None = None


_policy = RemotePolicy()
_task = _Task()


def configure(policy: RemotePolicy) -> None:
    global _policy
    _policy = policy


def policy() -> RemotePolicy:
    return _policy


def begin_task() -> None:
    """A worker task starts: a new deadline and no failure yet."""
    _task.number += 1
    _task.failure = None
    _task.deadline = time.monotonic() + max(_policy.time_limit - MARGIN_SECONDS, 0.5)


def end_task() -> None:
    """A worker task ends: raise the endpoint failure it met, even if it was swallowed."""
    failure, _task.failure = _task.failure, None
    if failure is not None:
        raise failure


def task_number() -> int:
    return _task.number


def call_deadline(retry_seconds: float | None = None) -> float:
    """When the retries of a call starting now must stop."""
    budget = _policy.retry_seconds if retry_seconds is None else retry_seconds
    return min(time.monotonic() + budget, _task.deadline)


def record_failure(error: ServiceError) -> None:
    """The endpoint failed in this task: later calls in it fail at once (no new retries)."""
    _task.failure = error


def task_failure() -> ServiceError | None:
    return _task.failure


def forget_failure() -> None:
    """The failure was reported in another way (a status check): the task goes on."""
    _task.failure = None
