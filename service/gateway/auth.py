"""Bearer API keys with scopes; open (loopback only) when no keys are configured."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
    for known, scopes in settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            return set(scopes)
    return None


def require(scope: Scope) -> Callable[..., Awaitable[None]]:
    """Dependency: the caller's key must grant ``scope`` (``admin`` grants everything)."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        settings: Settings = request.app.state.settings
        if not settings.auth_enabled:
            return
        if credentials is None:
            raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'")
        scopes = scopes_of(settings, credentials.credentials)
        if scopes is None:
            raise UnauthorizedError("invalid API key")
        if scope not in scopes and Scope.admin not in scopes:
            raise ForbiddenError(f"this API key lacks the '{scope}' scope")

    return check
