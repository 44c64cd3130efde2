"""The loan-officer page: one static file, no build step, nothing fetched from elsewhere."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/", name="root")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", name="dashboard")
async def dashboard() -> FileResponse:
    """The page; it calls the API from the browser (with the key the officer enters)."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")
