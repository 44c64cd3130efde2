"""How JSON request bodies are parsed: strictly valid Unicode, large ones off the loop.

orjson parses first (fast; it refuses lone surrogates, invalid UTF-8 and nesting past
1024 levels). What it refuses that Python's parser reads (NaN, integers beyond 64 bits,
numbers beyond the float range) is read by Python's parser instead, so the request's
own validation names the field; a string that cannot be encoded is refused either way.
Every refusal is a ``json.JSONDecodeError``, which FastAPI answers with 422.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from service.text import dotted, unencodable_path

OFF_LOOP_BYTES = 1 << 20  # bodies larger than this are parsed in a thread


def loads(body: bytes | str) -> Any:
    """Parse a JSON document; raise ``json.JSONDecodeError`` saying why it is refused."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as strict:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # invalid, not UTF-8, or nested too deeply
            raise strict from None
        where = unencodable_path(document)
        if where is not None:
            raise json.JSONDecodeError(
                f"the string at {dotted(where)} is not valid Unicode (a lone surrogate)",
                strict.doc,
                strict.pos,
            ) from None
        return document


async def parse(body: bytes | str) -> Any:
    """:func:`loads`, in a thread for a large body."""
    if len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(loads, body)
    return loads(body)


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = await parse(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An API route whose JSON body is parsed by :func:`parse`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return route
