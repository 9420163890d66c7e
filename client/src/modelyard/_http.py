"""HTTP plumbing: the registry's error envelope, retries with backoff, and an optional rate limit."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable, TypeVar

import httpx

from modelyard.errors import APIError, RegistryUnreachable

T = TypeVar("T")
RETRY_STATUSES = {429, 500, 502, 503, 504}


def error_from_response(response: httpx.Response) -> APIError:
    """The registry's ``{"error","message","fields"}`` envelope as an exception (any body tolerated)."""
    code, message, fields = "", "", {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or "")
        message = str(body.get("message") or body.get("detail") or "")
        fields = body.get("fields") if isinstance(body.get("fields"), dict) else {}
    if not message:
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        message = text if text and not text.startswith("<") else response.reason_phrase or "Request failed"
    message = " ".join(message.split())  # always one line
    return APIError(response.status_code, code or "http_error", message, fields, str(response.url))


def with_retries(
    send: Callable[[], T], *, what: str, attempts: int | None = None, base_delay: float = 0.5
) -> T:
    """Call ``send`` until it succeeds; retry transport errors and 429/5xx with exponential backoff.

    ``MODELYARD_RETRIES`` (default 5) is the number of attempts.
    """
    if attempts is None:
        attempts = max(1, int(os.environ.get("MODELYARD_RETRIES") or 5))
    for attempt in range(1, attempts + 1):
        try:
            return send()
        except APIError as exc:
            if exc.status not in RETRY_STATUSES or attempt == attempts:
                raise
        except (httpx.TransportError, RegistryUnreachable) as exc:
            if attempt == attempts:
                if isinstance(exc, RegistryUnreachable):
                    raise
                raise RegistryUnreachable(
                    f"{what} failed after {attempts} attempts: {_describe(exc)}"
                ) from exc
        delay = min(base_delay * 2 ** (attempt - 1), 15.0)
        time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not cryptography
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class RateLimiter:
    """Caps the bytes per second of all transfers of a client (``MODELYARD_MAX_RATE``, 0 = unlimited)."""

    def __init__(self, rate: int | None = None) -> None:
        if rate is None:
            rate = _parse_size(os.environ.get("MODELYARD_MAX_RATE", "0"))
        self.rate = rate
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._sent = 0

    def consume(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            self._sent += n
            due = self._start + self._sent / self.rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def _parse_size(text: str) -> int:
    """``"8MiB"``, ``"512k"``, ``"1048576"`` → bytes."""
    text = text.strip().lower().replace(" ", "")
    units = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
    units.update({"g": 1024**3, "gb": 1024**3, "gib": 1024**3})
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    if not number or unit not in units:
        raise ValueError(f"not a size: {text!r}")
    return int(float(number) * units[unit])


def env_size(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return _parse_size(raw)
    except ValueError as exc:
        from modelyard.errors import ConfigurationError

        raise ConfigurationError(f"{name}={raw!r} is not a size (e.g. 64MiB)") from exc


def json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
