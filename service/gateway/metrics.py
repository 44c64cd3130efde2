"""Prometheus metrics: requests and latency by route, cache hits/misses, jobs by state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Label values come from bounded sets only: route templates, these methods, status codes.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceCollector(Collector):
    """Reads cache and job figures from the data plane at scrape time."""

    def __init__(self, dataplane: Callable[[], Any]) -> None:
        self._dataplane = dataplane

    def collect(self) -> Iterator[Any]:
        plane = self._dataplane()
        if plane is None:
            return
        cache = CounterMetricFamily("xai_cache_requests", "Result cache lookups", labels=["result"])
        cache.add_metric(["hit"], plane.cache_hits)
        cache.add_metric(["miss"], plane.cache_misses)
        yield cache
        submitted = CounterMetricFamily("xai_jobs_submitted", "Jobs started on the executor")
        submitted.add_metric([], plane.jobs.submitted)
        yield submitted
        jobs = GaugeMetricFamily("xai_jobs", "Jobs by state", labels=["state"])
        for state, count in plane.jobs.state_counts().items():
            jobs.add_metric([state], count)
        yield jobs


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "xai_http_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "xai_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class MetricsMiddleware:
    """Counts and times every request under its route template (not the raw path) and its
    method (``other`` for any but the standard ones), so label sets stay bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
