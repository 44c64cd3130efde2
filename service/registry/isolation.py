"""Registration checks in a child process of their own.

Loading an artifact and predicting with it runs native code (scikit-learn's Cython trees,
XGBoost, LightGBM) on bytes from an upload; a malformed file can crash that code with a
segfault. :func:`validate_isolated` runs a check of the candidate (by default
:func:`~service.registry.validation.validated_report`; the worker's builds the whole
registration report) in a child process (forked from the warm worker where the platform
allows, so it costs milliseconds), so such a file kills only that child and is refused
with the reason; the worker and the service keep serving.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from service.errors import InvalidRequestError, Issue, ServiceError, error_from_payload
from service.registry.artifacts import UnsafeArtifactError
from service.registry.validation import CandidateError, validated_report

Check = Callable[[Path, str, tuple[str, ...]], Any]

DEFAULT_TIMEOUT = 100.0


def validate_isolated(
    folder: Path,
    source: str,
    extra_trusted: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    check: Check = validated_report,
) -> Any:
    """What ``check(folder, source, extra_trusted)`` returns (it must pickle), computed in a
    child process; a child that dies or overruns ``timeout`` seconds is a refusal."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_run, args=(sender, check, folder, source, tuple(extra_trusted)), daemon=True
    )
    _start(child)
    sender.close()
    outcome, answered = None, False
    try:
        answered = receiver.poll(timeout)  # True also when the child died: the pipe closed
        if answered:
            outcome = receiver.recv()
    except EOFError:  # the child died before it answered
        pass
    finally:
        receiver.close()
    if not answered:
        child.kill()
        child.join()
        raise CandidateError(f"validation did not finish within {timeout:g} s; refused")
    child.join()
    if outcome is None:
        raise CandidateError(
            "the artifact crashed the process that loaded it and predicted with it "
            f"({_death(child.exitcode)}); it is malformed or corrupted, so it is refused"
        )
    return _result(outcome)


def _context() -> Any:
    """Fork where the platform can (milliseconds, the child starts warm), else spawn."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def _start(child: Any) -> None:
    """Start ``child`` with native thread pools limited to one thread, even from a process
    marked daemonic.

    A forked child of a process whose OpenMP pool (LightGBM's) has several threads can
    deadlock in its first parallel region: it inherits the pool's state but not its
    threads. With the limit at one when it forks, the child never enters the pool (the
    workers run at one thread anyway). Celery's pool children are marked daemonic, and
    multiprocessing refuses such a process children; this one is always joined (or
    killed) before :func:`validate_isolated` returns, so it cannot outlive its parent."""
    from threadpoolctl import threadpool_limits

    config = multiprocessing.current_process()._config
    daemonic = config.get("daemon")
    config["daemon"] = False
    try:
        with threadpool_limits(limits=1):
            child.start()
    finally:
        config["daemon"] = daemonic


def _run(
    sender: Connection, check: Check, folder: Path, source: str, extra_trusted: tuple[str, ...]
) -> None:
    try:
        outcome: tuple[str, Any] = ("ok", check(folder, source, extra_trusted))
    except InvalidRequestError as exc:
        outcome = ("invalid", [i.as_dict() for i in exc.issues])
    except UnsafeArtifactError as exc:
        outcome = ("unsafe", str(exc))
    except CandidateError as exc:
        outcome = ("candidate", str(exc))
    except ServiceError as exc:
        outcome = ("service", exc.as_payload())
    except Exception as exc:  # noqa: BLE001 - carried to the parent, which reports it
        outcome = ("failed", f"{type(exc).__name__}: {exc}")
    sender.send(outcome)
    sender.close()


def _result(outcome: tuple[str, Any]) -> Any:
    kind, payload = outcome
    if kind == "ok":
        return payload
    if kind == "invalid":
        issues = [Issue(tuple(i["loc"]), i["msg"], i["type"]) for i in payload]
        raise InvalidRequestError(issues)
    if kind == "unsafe":
        raise UnsafeArtifactError(payload)
    if kind == "candidate":
        raise CandidateError(payload)
    if kind == "service":
        raise error_from_payload(payload)
    raise RuntimeError(payload)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"
