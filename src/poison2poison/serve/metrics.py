"""Prometheus metrics of the server: requests, latency, batch sizes, and what the defense saw (flips, missing safe
prefixes).

With several workers each process writes its values under PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, which `p2p serve --workers N` sets up), and /metrics adds them up across the workers.
"""

from __future__ import annotations

import os
import time
from typing import Any, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerMetrics:
    def __init__(self, endpoints: set[str]) -> None:
        self.endpoints = endpoints
        """Paths counted by name; any other path is counted as 'other', so a scan cannot grow the label set."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("p2p_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.latency = Histogram("p2p_request_seconds", "Time from request to response", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("p2p_requests_in_progress", "Requests being answered", ["endpoint"],
                                 multiprocess_mode="livesum", registry=r)
        self.batch_size = Histogram("p2p_batch_size", "Inputs per model call", buckets=BATCH_BUCKETS, registry=r)
        self.inputs = Counter("p2p_inputs", "Inputs answered, by endpoint", ["endpoint"], registry=r)
        self.detect_checked = Counter("p2p_detect_inputs", "Inputs also answered without the trigger (detect)",
                                      registry=r)
        self.flips = Counter("p2p_suspected_trigger", "Inputs whose plain and defended answers differ", registry=r)
        self.missing_prefix = Counter("p2p_missing_safe_prefix", "Generated outputs without the safe prefix",
                                      registry=r)

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of /metrics: this process's values, or every worker's added up."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_exited() -> None:
        """A worker's in-progress gauge leaves the sum when it stops."""
        if os.environ.get(MULTIPROCESS_ENV):
            mark_process_dead(os.getpid())


class RequestMetrics:
    """ASGI middleware: counts every HTTP request by endpoint and status, and times it."""

    def __init__(self, app: App, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.metrics.endpoint(scope["path"])
        status = 500  # what the client gets if the app fails before it responds
        started = time.perf_counter()

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        gauge = self.metrics.in_progress.labels(endpoint)
        gauge.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            gauge.dec()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status)).inc()
