"""Structured logs with request ids, Prometheus metrics for the web app and workers, and CSP.

- ``JsonFormatter`` (``LOG_FORMAT=json``): one JSON object a line, with the request id.
- ``MetricsMiddleware`` + ``metrics_view`` (``/metrics``): requests, errors and latency by route.
  With several web server workers set ``PROMETHEUS_MULTIPROC_DIR`` so they add up.
- Celery workers serve their own ``/metrics`` on ``MODELYARD_WORKER_METRICS_PORT`` when set.
- ``SecurityHeadersMiddleware``: a strict Content-Security-Policy on HTML pages.
"""

from __future__ import annotations

import json
import logging
import os
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from registry_project import request_context

# --- Logging --------------------------------------------------------------------------------


class RequestContextFilter(logging.Filter):
    """Adds the current request id and client address to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = request_context.current()
        record.request_id = ctx.request_id
        record.client_ip = ctx.client_ip or ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        if getattr(record, "client_ip", ""):
            body["client_ip"] = record.client_ip
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


# --- Metrics --------------------------------------------------------------------------------

REQUESTS = Counter("modelyard_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "modelyard_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TASKS = Counter("modelyard_celery_tasks_total", "Celery tasks finished", ["task", "state"])
TASK_SECONDS = Histogram("modelyard_celery_task_duration_seconds", "Celery task run time", ["task"])


class MetricsMiddleware:
    """Counts requests and times them by route pattern (not raw path: bounded label values)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


def _registry() -> CollectorRegistry | None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return None


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With ``MODELYARD_METRICS_TOKEN`` set, a matching bearer is required."""
    token = settings.MODELYARD_METRICS_TOKEN
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("metrics need the metrics token\n", status=401, content_type="text/plain")
    registry = _registry()
    data = generate_latest(registry) if registry is not None else generate_latest()
    return HttpResponse(data, content_type=CONTENT_TYPE_LATEST)


def connect_celery_metrics() -> None:
    """Count Celery tasks and serve worker metrics on ``MODELYARD_WORKER_METRICS_PORT``."""
    from celery import signals

    started: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id=None, **_):
        started[task_id] = time.perf_counter()

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id=None, task=None, state=None, **_):
        TASKS.labels(getattr(task, "name", "?"), state or "?").inc()
        if task_id in started:
            TASK_SECONDS.labels(getattr(task, "name", "?")).observe(
                time.perf_counter() - started.pop(task_id)
            )

    @signals.worker_ready.connect(weak=False)
    def _serve(**_):
        port = os.environ.get("MODELYARD_WORKER_METRICS_PORT")
        if port:
            from prometheus_client import start_http_server

            start_http_server(int(port), addr=os.environ.get("MODELYARD_WORKER_METRICS_ADDR", "0.0.0.0"))  # noqa: S104


# --- Security headers -----------------------------------------------------------------------

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """A strict CSP on HTML pages (the API answers JSON; its docs page needs its own inline script)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith(("/api/", "/admin/"))
            and "Content-Security-Policy" not in response
        ):
            response["Content-Security-Policy"] = CSP
        return response
