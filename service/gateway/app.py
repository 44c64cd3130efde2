"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service import __version__
from service.gateway.dataplane import DataPlane
from service.gateway.decisions import Decisions
from service.gateway.documents import assemble, splice
from service.gateway.errors import install_error_handlers
from service.gateway.gate import AuthGate
from service.gateway.handles import Handles, server_secret
from service.gateway.limits import BodySizeLimit
from service.gateway.metrics import Metrics, MetricsMiddleware, ServiceCollector
from service.gateway.receipts import Receipts
from service.gateway.routes import decisions as decisions_routes
from service.gateway.routes import global_, health, inference, jobs, models, page, plots
from service.jobs.backend import JobBackend
from service.jobs.cache import MemoryCache
from service.jobs.store import MemoryJobStore
from service.registry.store import ModelStore
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

RETENTION_PERIOD_SECONDS = 3600
DESCRIPTION = """Decisions of lending models with the reasons for them, and the measured
evidence of how far each explanation can be trusted."""


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of bodies that routes parse by hand."""
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in decisions_routes.EXTRA_SCHEMAS.items():
            components.setdefault(name, schema)
    return app.openapi_schema  # type: ignore[return-value]


async def _apply_retention(decisions: Decisions) -> None:
    """Delete receipts past their retention now and then every hour."""
    while True:
        try:
            purged = await decisions.purge_expired()
            if purged:
                log.info("deleted %d receipts past their retention", purged)
        except Exception:  # noqa: BLE001 - retried at the next round
            log.exception("receipt retention failed")
        await asyncio.sleep(RETENTION_PERIOD_SECONDS)


async def _rescan_models(store: ModelStore, period: float) -> None:
    """Take in versions registered by other processes (the CLI, another gateway)."""
    while True:
        await asyncio.sleep(period)
        try:
            await asyncio.to_thread(store.refresh)
        except Exception:  # noqa: BLE001 - retried at the next round
            log.exception("model repository rescan failed")


def operation_id(route: APIRoute) -> str:
    """Deterministic, readable operation ids: the route's name."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ModelStore(settings.models_dir)
        store.scan()
        handles = Handles(server_secret(settings))
        backend = job_backend(settings)
        await backend.start()
        app.state.dataplane = plane = DataPlane(settings, store, backend, handles)
        app.state.receipts = receipts = Receipts(plane)
        app.state.decisions = decisions = Decisions(plane, receipts)
        warm = asyncio.create_task(_warm_up(app))
        retention = asyncio.create_task(_apply_retention(decisions))
        tasks = [retention, warm]
        if settings.models_rescan_seconds > 0:
            tasks.append(asyncio.create_task(_rescan_models(store, settings.models_rescan_seconds)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await backend.stop()

    app = FastAPI(
        title="xai-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.dataplane = None
    app.state.metrics = metrics = Metrics()
    metrics.registry.register(ServiceCollector(lambda: app.state.dataplane))
    install_error_handlers(app)
    for router in (
        health.router,
        models.router,
        inference.router,
        decisions_routes.router,
        jobs.router,
    ):
        app.include_router(router)
    for router in (global_.router, plots.router, page.router):
        app.include_router(router)
    # outermost last: metrics see every answer; the key is checked before any body is read
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(AuthGate, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def job_backend(settings: Settings) -> JobBackend:
    """Celery on Redis when ``XAI_REDIS_URL`` is set, else the embedded process pool."""
    if settings.redis_url:
        from service.jobs.distributed import RedisJobs

        return RedisJobs(settings, assemble, splice)
    from service.jobs.executor import EmbeddedExecutor
    from service.jobs.manager import EmbeddedJobs

    return EmbeddedJobs(
        EmbeddedExecutor(settings),
        MemoryJobStore(
            settings.job_ttl_seconds, settings.job_max_finished, settings.job_max_result_bytes
        ),
        MemoryCache(settings.cache_max_entries, settings.cache_max_bytes),
        settings.job_time_limit,
        assemble,
        splice,
    )


async def _warm_up(app: FastAPI) -> None:
    try:
        await app.state.dataplane.warm_up()
        log.info("ready: %d models loaded", len(app.state.dataplane.store.names()))
    except Exception as exc:  # noqa: BLE001 - reported by /readyz
        app.state.startup_error = f"warm-up failed: {exc}"
        log.exception("warm-up failed")
