"""Domain errors. Each carries its HTTP status; the gateway maps them in one handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One problem with a request, located by a path such as ``("instances", 0, "age")``."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class ServiceError(Exception):
    """Base of every error the service reports to a caller."""

    status_code = 500
    code: str | None = None  # a stable name for errors callers act on (e.g. model_changed)

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def as_payload(self) -> dict[str, Any]:
        """A JSON-able description, used to carry the error across processes."""
        payload: dict[str, Any] = {"status_code": self.status_code, "message": self.message}
        if self.code is not None:
            payload["code"] = self.code
        return payload


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    status_code = 409


class PayloadTooLargeError(ServiceError):
    status_code = 413


class WorkerLostError(ServiceError):
    """The worker process running a task died (killed, or crashed in native code)."""


class UnavailableError(ServiceError):
    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})


class InvalidRequestError(ServiceError):
    """422 with one or more located issues."""

    status_code = 422

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(f"{_loc(i.loc)}: {i.msg}" for i in issues))
        self.issues = issues

    def as_payload(self) -> dict[str, Any]:
        return {**super().as_payload(), "issues": [i.as_dict() for i in self.issues]}


def invalid(
    loc: tuple[str | int, ...], msg: str, type_: str = "value_error"
) -> InvalidRequestError:
    """Shorthand for a 422 about one field."""
    return InvalidRequestError([Issue(loc, msg, type_)])


def error_from_payload(payload: dict[str, Any]) -> ServiceError:
    """Rebuild an error carried across processes by :meth:`ServiceError.as_payload`."""
    if payload.get("issues"):
        return InvalidRequestError(
            [
                Issue(tuple(i["loc"]), i["msg"], i.get("type", "value_error"))
                for i in payload["issues"]
            ]
        )
    status = int(payload.get("status_code", 500))
    message = str(payload.get("message", "unknown error"))
    error = UnavailableError(message) if status == 503 else ServiceError(message)
    error.status_code = status
    error.code = payload.get("code")
    return error


def _loc(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"
