"""The registry's one door to inference: forwards requests to a deployment's endpoint.

Consumers authenticate to the registry (a token with the ``predict`` scope, or a session); the
proxy forwards the request without their credentials, over a pool of kept-alive connections, and
streams the answer back. During a rolling redeploy the row's ``endpoint_url`` switches in one
update; a request whose connection fails re-reads it once, so no request fails because it raced
the switch.
"""

from __future__ import annotations

import logging

import urllib3
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from deployments_app.models import Deployment

logger = logging.getLogger(__name__)

# One pool per endpoint (host:port), kept alive between requests; never blocks for a slot.
_pool = urllib3.PoolManager(num_pools=256, maxsize=64, block=False)
_RETRY = urllib3.Retry(total=2, connect=2, read=1, status=0, other=0, redirect=0, allowed_methods=None)
FORWARDED_HEADERS = ("content-type", "accept", "content-encoding", "accept-encoding", "x-request-id")
RETURNED_HEADERS = ("content-type", "content-encoding", "cache-control", "x-request-id")
STREAM_ABOVE = 1024 * 1024


class ProxyError(Exception):
    """Why a request could not be forwarded. A 502/503 here is the deployment's state (stopped,
    starting, not answering), already logged once at WARNING by ``forward``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _current_endpoint(deployment_id: int) -> str:
    row = Deployment.objects.filter(pk=deployment_id).values("endpoint_url", "desired_state").first()
    if not row or row["desired_state"] != "running":
        return ""
    return row["endpoint_url"]


def forward(
    *, deployment: Deployment, method: str, path: str, query: str, body: bytes, headers
) -> HttpResponse:
    """Send ``method path?query`` with ``body`` to the deployment; returns a Django response."""
    endpoint = deployment.endpoint_url if deployment.is_serving else ""
    if not endpoint:
        logger.warning("proxy to deployment %s: %s, no endpoint", deployment.pk, deployment.status)
        raise ProxyError(503, f"Deployment '{deployment.name}' is {deployment.status}: no endpoint to serve.")
    out_headers = {name: value for name in FORWARDED_HEADERS if (value := headers.get(name))}
    target = "/" + path.lstrip("/") + (f"?{query}" if query else "")
    timeout = urllib3.Timeout(connect=2.0, read=settings.MODELYARD_DEPLOY_PROXY_TIMEOUT_SECONDS)
    for attempt in (1, 2):
        try:
            upstream = _pool.request(
                method,
                endpoint + target,
                body=body or None,
                headers=out_headers,
                retries=_RETRY,
                timeout=timeout,
                preload_content=False,
                redirect=False,
            )
            break
        except urllib3.exceptions.HTTPError as exc:
            fresh = _current_endpoint(deployment.pk)
            if attempt == 1 and fresh and fresh != endpoint:
                endpoint = fresh  # raced a rolling switch: the new instance answers
                continue
            logger.warning("proxy to deployment %s at %s failed: %s", deployment.pk, endpoint, exc)
            raise ProxyError(
                502, f"Deployment '{deployment.name}' did not answer: {type(exc).__name__}."
            ) from exc
    length = upstream.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= STREAM_ABOVE:
        response: HttpResponse = HttpResponse(upstream.read(), status=upstream.status)
        upstream.release_conn()
    else:

        def stream():
            try:
                yield from upstream.stream(64 * 1024)
            finally:
                upstream.release_conn()

        response = StreamingHttpResponse(stream(), status=upstream.status)
    for name in RETURNED_HEADERS:
        if value := upstream.headers.get(name):
            response[name] = value
    response["X-Modelyard-Deployment"] = deployment.name
    return response


def protocol_path(deployment: Deployment, body: bytes, protocol: str | None) -> str:
    """Where ``POST /deployments/{id}/predict`` goes: OIP v2 ``infer`` or MLflow ``invocations``.

    ``?protocol=v2|mlflow`` decides; otherwise a body whose inputs carry a ``datatype`` (the
    Open Inference Protocol's tensors) is v2 and anything else is MLflow scoring.
    """
    if protocol not in (None, "", "v2", "mlflow"):
        raise ProxyError(400, "protocol: use 'v2' or 'mlflow'.")
    if protocol == "v2" or (not protocol and b'"datatype"' in body[:65536]):
        return f"v2/models/{deployment.name}/infer"
    return "invocations"
