"""Error pages: JSON in the API's envelope for API clients (/api/, /ajax-api/, /serve/), HTML elsewhere."""

from django.http import HttpRequest, HttpResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from registry_project.api import json_error

# Paths whose callers are programs: the native and MLflow APIs, and the inference proxy.
JSON_PREFIXES = ("/api/", "/ajax-api/", "/serve/")


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return json_error(404, "No such resource.")
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return json_error(500, "Internal error; it has been logged.", code="server_error")
    return html_server_error(request)
