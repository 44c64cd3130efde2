"""A pool of warm worker processes, each on its own pipe, that the parent can kill.

The parent hands each task to one idle process itself, so it always knows which process
runs which task. A process that dies (killed, out of memory, crashed native code) fails
exactly its own task with :class:`WorkerDied`, whatever it was doing when it died; a task
past its time limit, or cancelled while it runs, has exactly its process killed. A dead
process is replaced and the pool itself never breaks. (Pools whose processes share one
task queue and lock cannot promise this: a process killed while holding the lock, or
between taking a task and acknowledging it, stalls or breaks the whole pool.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

log = logging.getLogger(__name__)
_POLL_SECONDS = 0.5  # the longest the manager sleeps with no event and no deadline
_FAILURES_BEFORE_BACK_OFF = 3  # processes in a row that die while starting
_RESPAWN_DELAY_MAX = 30.0  # back-off ceiling when processes keep failing to start


class WorkerDied(Exception):
    """The process running a task ended before answering (``exitcode`` < 0: its signal)."""

    def __init__(self, message: str, exitcode: int | None = None, pid: int | None = None):
        super().__init__(message)
        self.exitcode, self.pid = exitcode, pid


class TaskFuture(Future):  # type: ignore[type-arg]
    """A task's future. It stays *pending* while the task runs, so it can be cancelled
    then too (the pool kills the process running it); ``running()`` tells the two apart."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False

    def running(self) -> bool:
        return self._started and not self.done()

    def _mark_started(self) -> None:
        self._started = True

    def _settle(self, succeeded: bool, value: Any) -> None:
        if not self.set_running_or_notify_cancel():  # cancelled meanwhile
            return
        if succeeded:
            self.set_result(value)
        else:
            self.set_exception(value)


@dataclass(eq=False)
class _Task:
    future: TaskFuture
    payload: bytes  # the pickled (function, args)
    timeout: float | None
    deadline: float = float("inf")


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False  # its initializer has run
    task: _Task | None = None
    killed: bool = False  # killed by the pool: its end fails nothing more


@dataclass
class _Spawning:
    failures: int = 0  # processes in a row that died before they were ready
    not_before: float = 0.0


@dataclass
class _State:
    pending: deque[_Task] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerPool:
    """``workers`` processes from ``context``; each runs ``initializer(*initargs)`` once,
    then one task at a time. :meth:`schedule` returns a :class:`TaskFuture`."""

    def __init__(
        self,
        workers: int,
        context: BaseContext,
        initializer: Callable[..., None] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one process")
        self._size, self._context = workers, context
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._workers: list[_Worker] = []
        self._state = _State()
        self._spawning = _Spawning()
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._wake_lock, self._wake_closed = threading.Lock(), False
        self._thread = threading.Thread(target=self._manage, name="worker-pool", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        """The pool accepts and runs tasks."""
        return self._thread.is_alive() and not self._stopping.is_set()

    def schedule(
        self, function: Callable[..., Any], args: Iterable[Any] = (), timeout: float | None = None
    ) -> TaskFuture:
        """Queue ``function(*args)``; past ``timeout`` seconds of running, its process is
        killed and the future fails with ``TimeoutError``. Unpicklable arguments raise here."""
        if not self.active:
            raise RuntimeError("the worker pool is not running")
        payload = bytes(ForkingPickler.dumps((function, tuple(args))))
        future = TaskFuture()
        future.add_done_callback(self._wake_on_cancel)
        with self._state.lock:
            self._state.pending.append(_Task(future, payload, timeout))
        self._wake()
        return future

    def processes(self) -> list[BaseProcess]:
        """The pool's live processes (a snapshot)."""
        return [w.process for w in list(self._workers)]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process; tasks not finished are cancelled."""
        self._stopping.set()
        self._wake()
        self._thread.join(timeout)

    # -- the manager thread ------------------------------------------------------------

    def _manage(self) -> None:
        try:
            while not self._stopping.is_set():
                self._replace_missing()
                self._dispatch()
                self._wait_for_events(self._seconds_to_next_event())
                self._enforce_limits()
        except Exception:  # a bug here must not leave tasks waiting forever
            log.exception("the worker pool's manager failed; stopping the pool")
            self._stopping.set()
        finally:
            self._shut_down()

    def _replace_missing(self) -> None:
        now = time.monotonic()
        while len(self._workers) < self._size and now >= self._spawning.not_before:
            parent_end, child_end = self._context.Pipe(duplex=True)
            process = self._context.Process(  # type: ignore[attr-defined]
                target=_worker_main,
                args=(child_end, self._initializer, self._initargs),
                name="xai-worker",
            )
            try:
                process.start()
            except OSError as exc:  # e.g. out of processes or memory: try again later
                parent_end.close()
                self._spawning.failures += 1
                self._spawning.not_before = now + self._respawn_delay()
                log.error("could not start a worker process: %s", exc)
                return
            finally:
                child_end.close()
            self._workers.append(_Worker(process, parent_end))

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not worker.ready or worker.task is not None or worker.killed:
                continue
            if not worker.process.is_alive():  # its death is noticed on the next wait
                continue
            task = self._next_task()
            if task is None:
                return
            try:
                worker.conn.send_bytes(task.payload)
            except OSError:  # it died idle: the task never started
                with self._state.lock:
                    self._state.pending.appendleft(task)
                continue
            worker.task = task
            task.deadline = time.monotonic() + task.timeout if task.timeout else float("inf")
            task.future._mark_started()

    def _next_task(self) -> _Task | None:
        with self._state.lock:
            while self._state.pending:
                task = self._state.pending.popleft()
                if not task.future.cancelled():
                    return task
        return None

    def _seconds_to_next_event(self) -> float:
        now = time.monotonic()
        soonest = min((w.task.deadline for w in self._workers if w.task), default=float("inf"))
        if len(self._workers) < self._size:
            soonest = min(soonest, self._spawning.not_before)
        return max(0.0, min(soonest - now, _POLL_SECONDS))

    def _wait_for_events(self, timeout: float) -> None:
        by_conn = {id(w.conn): w for w in self._workers}
        by_sentinel = {w.process.sentinel: w for w in self._workers}
        ready = wait([self._wake_read, *(w.conn for w in self._workers), *by_sentinel], timeout)
        if self._wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
        for source in ready:  # answers before deaths: a process may answer, then die
            worker = by_conn.get(id(source))
            if worker is not None and worker in self._workers:
                self._receive(worker)
        for source in ready:
            worker = by_sentinel.get(source)  # type: ignore[call-overload]
            if worker is not None and worker in self._workers:
                self._bury(worker)

    def _receive(self, worker: _Worker) -> None:
        message = _read(worker.conn)
        if message is None:
            self._bury(worker)
        else:
            self._handle(worker, message)

    def _handle(self, worker: _Worker, message: bytes) -> None:
        task, worker.task = worker.task, None
        try:
            kind, value = pickle.loads(message)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception type that cannot be rebuilt
            kind, value = "error", RuntimeError(f"the worker's answer could not be read: {exc}")
        if kind == "ready":
            worker.ready = True
            self._spawning = _Spawning()
        elif task is not None and not worker.killed:
            task.future._settle(kind == "result", value)

    def _bury(self, worker: _Worker) -> None:
        """A process ended: fail its task (unless the pool killed it) and forget it."""
        if worker not in self._workers:
            return
        while worker.task is not None and not worker.killed:
            message = _read(worker.conn, wait=False)  # it may have answered, then died
            if message is None:
                break
            self._handle(worker, message)
        worker.process.join(timeout=5)
        exitcode, pid = worker.process.exitcode, worker.process.pid
        worker.conn.close()
        self._workers.remove(worker)
        if worker.task is not None and not worker.killed:
            worker.task.future._settle(
                False, WorkerDied("the worker process died running the task", exitcode, pid)
            )
        if not worker.ready and not worker.killed and not self._stopping.is_set():
            self._spawning.failures += 1
            delay = self._respawn_delay()
            self._spawning.not_before = time.monotonic() + delay
            log.error(
                "a worker process ended while starting (exit code %s); the next in %.1f s",
                exitcode,
                delay,
            )

    def _respawn_delay(self) -> float:
        """None for the first failures in a row (a kill while starting), then doubling."""
        failures = self._spawning.failures
        if failures < _FAILURES_BEFORE_BACK_OFF:
            return 0.0
        return min(_RESPAWN_DELAY_MAX, 0.5 * 2 ** (failures - _FAILURES_BEFORE_BACK_OFF))

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            task = worker.task
            if task is None or worker.killed:
                continue
            if task.future.cancelled():
                self._kill(worker)
            elif now >= task.deadline:
                self._kill(worker)
                task.future._settle(False, TimeoutError(f"task timeout ({task.timeout:g} s)"))

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.killed = True
        with contextlib.suppress(OSError):
            worker.process.kill()

    def _shut_down(self) -> None:
        for worker in self._workers:
            worker.conn.close()  # an idle process ends at the closed pipe
            with contextlib.suppress(OSError):
                worker.process.terminate()
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            if worker.task is not None:
                worker.task.future.cancel()
        self._workers.clear()
        with self._state.lock:
            pending, self._state.pending = list(self._state.pending), deque()
        for task in pending:
            task.future.cancel()
        with self._wake_lock:
            self._wake_closed = True
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _wake(self) -> None:
        with self._wake_lock:
            if not self._wake_closed:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_write, b"\0")

    def _wake_on_cancel(self, future: Future) -> None:  # type: ignore[type-arg]
        if future.cancelled() and not self._stopping.is_set():
            self._wake()


def _read(conn: Connection, wait: bool = True) -> bytes | None:
    """The next message on ``conn``; None at its end (or, with ``wait=False``, if none)."""
    try:
        if not wait and not conn.poll(0):
            return None
        return conn.recv_bytes()
    except (EOFError, OSError):
        return None


def _worker_main(
    conn: Connection, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    """A pool process: initialise once, then answer one task at a time until the pipe
    closes. An exception of the task is its answer; only dying ends the process early."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    if initializer is not None:
        initializer(*initargs)
    conn.send_bytes(pickle.dumps(("ready", None)))
    while True:
        try:
            function, args = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            answer: tuple[str, Any] = ("result", function(*args))
        except Exception as exc:  # noqa: BLE001 - the task's failure is its answer
            answer = ("error", exc)
        try:
            message = pickle.dumps(answer)
        except Exception as exc:  # noqa: BLE001
            message = pickle.dumps(
                ("error", RuntimeError(f"the task's answer could not be sent: {exc}"))
            )
        conn.send_bytes(message)
