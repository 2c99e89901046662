"""Observability: Prometheus `/metrics`, a request id on every request and log line, JSON logs.

- `GET /metrics` (Prometheus text format; an operator key only, app/auth.py): HTTP requests and latencies by method, route template and
  status; audits, encoders, comparisons and webhooks by status (read from the database at scrape time, so every API
  replica reports the same job counts); stage durations of finished audits.
- `X-Request-ID`: taken from the request when it is a short token, else generated; echoed on the
  response and attached to every log line written while the request is served.
- `LOG_FORMAT=json`: one JSON object per log line (app/core/logs.py, shared with the Celery workers).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthaudit.app.core.logs import _VALID_ID, _request_id, configure_log_format

STAGE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 3 * 3600, 12 * 3600)


class _Metrics:
    """The API's own Prometheus registry (one per app, so tests can build several apps)."""

    def __init__(self, services: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "synthaudit_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "synthaudit_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(_JobCollector(services))


class _JobCollector:
    """Job counts and stage durations, read from the database when Prometheus scrapes."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        from synthaudit.app.core import repository as repo

        audits = GaugeMetricFamily("synthaudit_audits", "audits by status", labels=["status"])
        encoders = GaugeMetricFamily("synthaudit_encoders", "encoders by status", labels=["status"])
        comparisons = GaugeMetricFamily("synthaudit_comparisons", "comparisons by status", labels=["status"])
        webhooks = GaugeMetricFamily("synthaudit_webhooks", "audit webhooks by state", labels=["state"])
        up = GaugeMetricFamily("synthaudit_database_up", "1 when the database answered the scrape")
        stages = HistogramMetricFamily(
            "synthaudit_stage_duration_seconds",
            "stage durations of the last 1000 finished audits",
            labels=["stage"],
        )
        try:
            with self.services.sessions() as session:
                for status, n in repo.audit_counts(session):
                    audits.add_metric([status], n)
                for status, n in repo.encoder_counts(session):
                    encoders.add_metric([status], n)
                for status, n in repo.comparison_counts(session):
                    comparisons.add_metric([status], n)
                for state, n in repo.webhook_counts(session):
                    webhooks.add_metric([state or "pending"], n)
                timings = repo.recent_stage_timings(session, 1000)
                for stage, values in _by_stage(timings).items():
                    buckets = [(str(b), sum(v <= b for v in values)) for b in STAGE_BUCKETS]
                    stages.add_metric([stage], [*buckets, ("+Inf", len(values))], sum(values))
            up.add_metric([], 1)
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            up.add_metric([], 0)
        yield from (audits, encoders, comparisons, webhooks, stages, up)


def _by_stage(timings: Any) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row in timings:
        for stage, seconds in (row or {}).items():
            if isinstance(seconds, int | float):
                out.setdefault(stage, []).append(float(seconds))
    return out


class RequestObservability:
    """ASGI middleware: request id in and out, request counter and latency by route template."""

    def __init__(self, app: ASGIApp, metrics: _Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(rid)
        status = [500]
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            _request_id.reset(token)


def install_observability(app: FastAPI, services: Any, log_format: str = "text") -> None:
    """Add the middleware and `GET /metrics` to the app; set up the log format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    configure_log_format(log_format)
    metrics = _Metrics(services)
    app.add_middleware(RequestObservability, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
