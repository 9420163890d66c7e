"""Per-request facts that audit records need (client IP, request id, token), kept in contextvars.

Set by ``RequestContextMiddleware`` and by token authentication; read by ``audit_record``.
Context variables are isolated per thread and per asyncio task, so concurrent requests never
see each other's values.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, replace

from django.http import HttpRequest


@dataclass(frozen=True)
class RequestContext:
    client_ip: str | None = None
    request_id: str = ""
    token_id: int | None = None


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "modelyard_request_context",
    default=RequestContext(),  # noqa: B039 - a frozen dataclass, immutable
)


def current() -> RequestContext:
    return _current.get()


def set_token(token_id: int | None) -> None:
    _current.set(replace(_current.get(), token_id=token_id))


class RequestContextMiddleware:
    """Records the client address and a request id (``X-Request-ID`` or a new one)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        token = _current.set(RequestContext(client_ip=request.META.get("REMOTE_ADDR"), request_id=request_id))
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response["X-Request-ID"] = request_id
        return response
