"""Refuse a request its API key does not allow before anything reads its body.

FastAPI reads and parses a body before a route's dependencies run, so a key checked there
is checked after a stranger's 30 MB upload was received and parsed. This ASGI middleware
finds the route a request is for, takes the scopes that route declares with
``require(scope)`` (see :mod:`service.gateway.auth`) and answers 401/403 at once.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.gateway.auth import CALLER_STATE, authenticate, authorize
from service.settings import Scope as KeyScope
from service.settings import Settings


class AuthGate:
    """ASGI middleware: authorise by the matched route's declared scopes, body unread."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self._routes: list[tuple[RouteContext, frozenset[KeyScope]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.auth_enabled:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        try:
            required = self._required(scope)
            if required:
                caller = authenticate(self.settings, header)
                for needed in required:
                    authorize(caller, needed)
                scope.setdefault("state", {})[CALLER_STATE] = caller
        except ServiceError as exc:
            await _refuse(send, exc)
            return
        await self.app(scope, receive, send)

    def _required(self, scope: Scope) -> frozenset[KeyScope]:
        """Scopes of the route the router will pick (none for public and unknown paths)."""
        if self._routes is None:  # the routes as the router sees them, included routers' too
            self._routes = [
                (route, required_scopes(route.dependant))
                for route in iter_route_contexts(scope["app"].router.routes)
                if isinstance(route.original_route, APIRoute)
            ]
        for route, scopes in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return scopes
        return frozenset()


def required_scopes(dependant: Dependant) -> frozenset[KeyScope]:
    """Every scope a route's dependency tree asks for via ``require``."""
    found: set[KeyScope] = set()
    for dependency in dependant.dependencies:
        scope: Any = getattr(dependency.call, "required_scope", None)
        if scope is not None:
            found.add(scope)
        found |= required_scopes(dependency)
    return frozenset(found)


async def _refuse(send: Send, error: ServiceError) -> None:
    body = orjson.dumps({"detail": error.message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
