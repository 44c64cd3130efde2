"""Bearer API keys with scopes; open (loopback only) when no keys are configured.

Each protected route declares its scope with a ``require(scope)`` dependency, which puts
the bearer scheme in the OpenAPI document. :class:`service.gateway.gate.AuthGate` reads
those declarations and refuses a request before anything reads its body; the dependency
checks again, so a route stays protected wherever the app is mounted. Both decide with
:func:`authorize`, and the key lookup itself is :func:`scopes_of`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from service.errors import ServiceError
from service.settings import Scope, Settings

bearer = HTTPBearer(auto_error=False, description="API key from XAI_API_KEYS")


class UnauthorizedError(ServiceError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class ForbiddenError(ServiceError):
    status_code = 403


def scopes_of(settings: Settings, key: str) -> set[Scope] | None:
    """The scopes an API key grants, or None for an unknown key."""
    for known, scopes in settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            return set(scopes)
    return None


def authorize(settings: Settings, authorization: str | None, scope: Scope) -> None:
    """Raise 401 unless ``authorization`` (the header's value) carries a known key, 403
    unless that key grants ``scope`` (``admin`` grants everything)."""
    if not settings.auth_enabled:
        return
    scheme, key = get_authorization_scheme_param(authorization)
    if not authorization or scheme.lower() != "bearer" or not key:
        raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'")
    scopes = scopes_of(settings, key)
    if scopes is None:
        raise UnauthorizedError("invalid API key")
    if scope not in scopes and Scope.admin not in scopes:
        raise ForbiddenError(f"this API key lacks the '{scope}' scope")


def require(scope: Scope) -> Callable[..., Awaitable[None]]:
    """Dependency: the caller's key must grant ``scope``; its ``required_scope`` attribute
    tells :class:`~service.gateway.gate.AuthGate` the same before the body is read."""

    async def check(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        authorize(request.app.state.settings, request.headers.get("authorization"), scope)

    check.required_scope = scope  # type: ignore[attr-defined]
    return check
