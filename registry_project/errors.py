"""Domain exceptions raised by services and mapped to HTTP answers in one place.

Services raise Django's ``ValidationError`` for bad input and domain rules (400),
``PermissionDenied`` (403), ``ObjectDoesNotExist`` (404) and ``Conflict`` below (409); stores
raise ``BlobMissing`` (503) when bytes a row vouches for are gone. The
REST exception handler (registry_project.api) and the UI views translate them.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError


class Conflict(Exception):
    """The request clashes with the current state: a duplicate name, a lost race, a frozen version."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "conflict") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class BlobMissing(FileNotFoundError):
    """A blob row vouches for bytes the store no longer has (deleted or lost outside Modelyard)."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"blob {sha256} is missing from the artifact store")
        self.sha256 = sha256


def error_text(exc: Exception) -> str:
    """The sentence a page shows for a refused action (a service's Conflict, ValidationError, …)."""
    if isinstance(exc, Conflict):
        return exc.message
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or "Not allowed."
