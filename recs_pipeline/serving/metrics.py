"""Prometheus metrics of one API instance (a registry of its own, so apps never collide)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recs_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recs_http_request_duration_seconds",
            "Time to answer a request, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_accepted = Counter(
            "recs_events_accepted",
            "Events accepted into live state",
            ["site"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "recs_events_rejected",
            "Posted events rejected, by reason",
            ["site", "reason"],
            registry=self.registry,
        )
        self.version_age = Gauge(
            "recs_model_version_age_seconds",
            "Age of the served version's as_of (wall clock), by site and model type",
            ["site", "type"],
            registry=self.registry,
        )
        self.version_id = Gauge(
            "recs_model_version_id",
            "Served model version id",
            ["site", "type"],
            registry=self.registry,
        )
        self.database_up = Gauge(
            "recs_serving_database_up",
            "1 when the last poll of the serving database worked",
            ["site"],
            registry=self.registry,
        )
        self.live_clock = Gauge(
            "recs_live_clock_seconds",
            "Event-time clock of live state (newest accepted event)",
            ["site"],
            registry=self.registry,
        )
        self.live_up = Gauge(
            "recs_live_store_up", "1 when the live store answers", registry=self.registry
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
