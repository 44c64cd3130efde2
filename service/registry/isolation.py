"""Registration checks in a child process of their own.

Loading an artifact and predicting with it runs native code (scikit-learn's Cython trees,
XGBoost, LightGBM) on bytes from an upload; a malformed file can crash that code with a
segfault. :func:`validate_isolated` runs a check of the candidate (by default
:func:`~service.registry.validation.validated_report`; the worker's builds the whole
registration report) in a child process, so such a file kills only that child and is
refused with the reason; the worker and the service keep serving. Children come from a
fork server that has imported the checks but never run them, so each costs milliseconds
after the first (a plain fork of a process that has used OpenMP, as LightGBM does, can
deadlock in the child).
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
PRELOAD = ["service.registry.validation", "service.registration"]


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
    """A fork server where the platform has one (its children start with the checks
    imported and no thread pool inherited), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _start(child: Any) -> None:
    """Start ``child`` even from a process marked daemonic: Celery's pool children are, and
    multiprocessing refuses them children. This one is always joined (or killed) before
    :func:`validate_isolated` returns, so it cannot outlive its parent."""
    config = multiprocessing.current_process()._config  # noqa: SLF001 - see above
    daemonic = config.get("daemon")
    config["daemon"] = False
    try:
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
