"""Render the OpenAPI document deterministically (what api_schema/openapi.json holds)."""

from __future__ import annotations

import json

from fastapi import FastAPI


def render_openapi(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
