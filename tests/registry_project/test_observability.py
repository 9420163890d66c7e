"""Structured logs with request ids, Prometheus metrics, and security headers."""

from __future__ import annotations

import json
import logging

from django.test import Client

from registry_project import request_context
from registry_project.observability import JsonFormatter, RequestContextFilter


def test_json_logs_carry_the_request_id(db):
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(JsonFormatter().format(record))

    handler = Capture()
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("models_app.test-capture")
    logger.addHandler(handler)
    try:

        def view_logging(request):
            logger.warning("inside %s", "a request")
            from django.http import HttpResponse

            return HttpResponse("ok")

        middleware = request_context.RequestContextMiddleware(view_logging)
        from django.test import RequestFactory

        response = middleware(RequestFactory().get("/x", HTTP_X_REQUEST_ID="req-123"))
    finally:
        logger.removeHandler(handler)
    line = json.loads(seen[0])
    assert (
        line["message"] == "inside a request"
        and line["request_id"] == "req-123"
        and line["level"] == "WARNING"
    )
    assert response["X-Request-ID"] == "req-123"


def test_metrics_count_requests_by_route(db, settings):
    client = Client()
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert 'modelyard_http_requests_total{method="GET",route="healthz",status="200"}' in body
    assert "modelyard_http_request_duration_seconds_bucket" in body
    settings.MODELYARD_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_html_pages_get_a_strict_csp_and_json_does_not(owner):
    client = Client()
    client.force_login(owner)
    page = client.get("/")
    assert (
        "script-src 'self'" in page["Content-Security-Policy"]
        and "frame-ancestors 'none'" in page["Content-Security-Policy"]
    )
    assert "Content-Security-Policy" not in client.get("/healthz")
