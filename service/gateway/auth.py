"""Bearer API keys with scopes and tenants; open (loopback only) when no keys are configured.

:func:`authenticate` resolves an ``Authorization`` header to a :class:`Caller`; it is all a
route dependency or an ASGI middleware needs. What it resolved is kept in the request's
state (``scope["state"]["caller"]``), so a middleware that ran first is not repeated.

Each protected route declares its scope with a ``require(scope)`` dependency, which puts
the bearer scheme in the OpenAPI document. :class:`service.gateway.gate.AuthGate` reads
those declarations and refuses a request before anything reads its body; the dependency
checks again, so a route stays protected wherever the app is mounted.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import ServiceError
from service.gateway.tenancy import OPEN_CALLER, Caller, tenant_of
from service.settings import Scope, Settings

bearer = HTTPBearer(auto_error=False, description="API key from XAI_API_KEYS")
CALLER_STATE = "caller"


class UnauthorizedError(ServiceError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class ForbiddenError(ServiceError):
    status_code = 403


def authenticate(settings: Settings, authorization: str | None) -> Caller:
    """The caller an ``Authorization`` header names (401 when missing or unknown)."""
    if not settings.auth_enabled:
        return OPEN_CALLER
    token = bearer_token(authorization)
    if token is None:
        raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'")
    found: Caller | None = None
    for known, grant in settings.api_keys.items():  # compare with every key: constant time
        if hmac.compare_digest(known.encode(), token.encode()):
            found = Caller(tenant_of(known, grant), frozenset(grant.scopes))
    if found is None:
        raise UnauthorizedError("invalid API key")
    return found


def authorize(caller: Caller, scope: Scope) -> Caller:
    """``caller`` when it holds ``scope`` (``admin`` grants everything), else 403."""
    if not caller.may(scope):
        raise ForbiddenError(f"this API key lacks the '{scope}' scope")
    return caller


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def caller_of(request: Request) -> Caller:
    """Dependency: the request's caller (resolved once per request)."""
    caller = getattr(request.state, CALLER_STATE, None)
    if caller is None:
        settings: Settings = request.app.state.settings
        caller = authenticate(settings, request.headers.get("authorization"))
        setattr(request.state, CALLER_STATE, caller)
    return caller


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """Dependency: the caller's key must grant ``scope``; its ``required_scope`` attribute
    tells :class:`~service.gateway.gate.AuthGate` the same before the body is read."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        del credentials  # declared for the OpenAPI security scheme; parsed by caller_of
        return authorize(caller_of(request), scope)

    check.required_scope = scope  # type: ignore[attr-defined]
    return check


async def current_caller(request: Request) -> Caller:
    """Dependency: :func:`caller_of` (async: FastAPI runs a sync dependency in a thread)."""
    return caller_of(request)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
