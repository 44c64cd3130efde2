"""One place that turns errors into HTTP responses.

Every message is made sendable (text UTF-8 cannot carry is escaped) and stripped of
server paths before it leaves.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.errors import InvalidRequestError, ServiceError
from service.explainers.registry import method_names
from service.redaction import redact_paths
from service.text import printable


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        detail: Any = (
            [i.as_dict() for i in exc.issues]
            if isinstance(exc, InvalidRequestError)
            else exc.message
        )
        return error_response(request, detail, exc.status_code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette answers with the methods of the first route matching the path only.
            allowed: set[str] = set()
            for route in request.app.router.routes:
                match, _ = route.matches(request.scope)
                if match is not Match.NONE:
                    allowed |= getattr(route, "methods", None) or set()
            headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
            exc = StarletteHTTPException(405, exc.detail, headers=headers)
        if isinstance(exc.detail, str):
            return error_response(request, exc.detail, exc.status_code, exc.headers or {})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, [_issue(e) for e in exc.errors()], 422, {})


def error_response(
    request: Request, detail: Any, status_code: int, headers: dict[str, str]
) -> Response:
    """``{"detail": ...}`` with every string sendable and free of server paths."""
    roots = (str(request.app.state.settings.models_dir),)
    body = orjson.dumps({"detail": public(detail, roots)})
    return Response(body, status_code, headers, media_type="application/json")


def public(value: Any, roots: tuple[str, ...]) -> Any:
    """``value`` (an error detail or payload) with every string sendable and cut of paths
    under the server's folders (``roots`` besides the usual ones)."""
    if isinstance(value, str):
        return redact_paths(printable(value), roots)
    if isinstance(value, dict):
        return {printable(str(k)): public(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v, roots) for v in value]
    return value


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    loc = [p if isinstance(p, (int, str)) else str(p) for p in error["loc"]]
    msg = str(error["msg"])
    if error["type"] == "literal_error" and loc[:2] == ["body", "methods"]:
        msg = f"unknown method {_short(error.get('input'))}; valid methods: {method_names()}"
    elif error["type"] == "json_invalid" and (error.get("ctx") or {}).get("error"):
        msg = f"{msg}: {error['ctx']['error']}"
    return {"loc": loc, "msg": msg, "type": error["type"]}


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "a number"
    try:
        text = repr(value)
    except RecursionError:
        return "a deeply nested value"
    return text if len(text) <= 80 else text[:77] + "..."
