"""Embedded mode: a task whose worker process died is run again on a fresh process.

The pool replaces a process that dies (killed, out of memory, crashed native code) and
fails that task's future with ``WorkerDied``; nothing else is lost. A task is retried
up to ``attempts`` times in all; then its future fails with every cause in the message.
A time limit or a cancellation is never retried.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

from service.jobs.process_pool import WorkerDied

log = logging.getLogger(__name__)
ATTEMPTS = 3


class RetriedFuture(Future):  # type: ignore[type-arg]
    """The outcome of one task across the processes that ran it.

    It stays pending until the last run settles, so it can be cancelled at any time;
    cancelling it stops the current run. ``running()`` reports the current run."""

    def __init__(self, schedule: Callable[[], Future], attempts: int = ATTEMPTS) -> None:  # type: ignore[type-arg]
        super().__init__()
        self._schedule, self._attempts = schedule, attempts
        self._lock = threading.Lock()
        self._current: Future | None = None  # type: ignore[type-arg]
        self._deaths: list[int] = []
        self._run()

    def running(self) -> bool:
        current = self._current
        return current is not None and current.running()

    def cancel(self) -> bool:
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel()
        return super().cancel()

    def _run(self) -> None:
        with self._lock:
            if self.done():
                return
            try:
                self._current = current = self._schedule()
            except Exception as exc:  # noqa: BLE001 - e.g. the pool stopped meanwhile
                self._current = None
                self.set_exception(exc)
                return
        current.add_done_callback(self._settle)

    def _settle(self, run: Future) -> None:  # type: ignore[type-arg]
        if self.done():
            return
        if run.cancelled():
            self.cancel()
            return
        error = run.exception()
        if isinstance(error, WorkerDied):
            self._deaths.append(error.exitcode)
            if len(self._deaths) < self._attempts:
                log.warning(
                    "a worker process died (%s) running a task; running it again (try %d of %d)",
                    cause(error.exitcode),
                    len(self._deaths) + 1,
                    self._attempts,
                )
                self._run()
                return
            error = WorkerDied(
                f"on each of {len(self._deaths)} tries: "
                + ", ".join(cause(code) for code in self._deaths),
                error.exitcode,
                error.pid,
            )
        try:
            if error is None:
                self.set_result(run.result())
            else:
                self.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile
            pass


def cause(exitcode: int | None) -> str:
    """A process exit code in words: a negative code is the signal that killed it."""
    if exitcode is None:
        return "exited"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exited with code {exitcode}"
