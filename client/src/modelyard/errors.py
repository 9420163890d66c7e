"""The errors the client raises: each carries a one-line message fit for a terminal."""

from __future__ import annotations

from typing import Any


class ModelyardError(Exception):
    """Base class: ``str(exc)`` is a complete, one-line explanation."""

    exit_code = 1


class ConfigurationError(ModelyardError):
    exit_code = 2


class RegistryUnreachable(ModelyardError):
    """The registry did not answer (DNS, refused connection, timeout)."""


class APIError(ModelyardError):
    """The registry answered with an error status; ``message`` is the server's own sentence."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, Any] | None = None, url: str = ""
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.url = url
        super().__init__(f"{message} (HTTP {status} {code})")


class DigestMismatch(ModelyardError):
    """Downloaded bytes do not have the SHA-256 the registry announced."""
