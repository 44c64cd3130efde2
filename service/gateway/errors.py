"""One place that turns errors into HTTP responses."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.errors import InvalidRequestError, ServiceError
from service.explainers.registry import method_names


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        detail: Any = (
            [i.as_dict() for i in exc.issues]
            if isinstance(exc, InvalidRequestError)
            else exc.message
        )
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

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
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [_issue(e) for e in exc.errors()]
        return JSONResponse({"detail": issues}, status_code=422)


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    loc = [p if isinstance(p, (int, str)) else str(p) for p in error["loc"]]
    msg = str(error["msg"])
    if error["type"] == "literal_error" and loc[:2] == ["body", "methods"]:
        msg = f"unknown method {_short(error.get('input'))}; valid methods: {method_names()}"
    return {"loc": loc, "msg": msg, "type": error["type"]}


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) or math.isfinite(value) else "a number"
    return text if len(text) <= 80 else text[:77] + "..."
