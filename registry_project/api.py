"""Shared REST plumbing: the JSON error envelope, pagination and strict input serializers.

Every error the API returns has one shape::

    {"error": "<code>", "message": "<human sentence>", "fields": {"<field>": ["<problem>", ...]}}
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from registry_project.errors import BlobMissing, Conflict

logger = logging.getLogger(__name__)

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


class LimitedJSONParser(JSONParser):
    """JSON bodies up to ``MODELYARD_MAX_JSON_BYTES``: larger ones are refused before parsing."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        limit = settings.MODELYARD_MAX_JSON_BYTES
        if length and length.isdigit() and int(length) > limit:
            raise exceptions.ParseError(f"The JSON body is larger than {limit} bytes.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:  # [[[[...]]]] nested deeper than the parser can follow
            raise exceptions.ParseError("The JSON body is nested too deeply.") from exc
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            # Parsed, but deeper than json.dumps can write back to a JSONField: refuse it here.
            raise exceptions.ParseError(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
        return data


MAX_JSON_DEPTH = 64


def _depth_exceeds(data: Any, limit: int) -> bool:
    """True when ``data`` nests lists/dicts more than ``limit`` levels (iterative, no recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class Pagination(PageNumberPagination):
    """Page-numbered lists: ``?page=2&page_size=100`` (at most 1,000 a page)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000


def _flatten(detail: Any) -> Any:
    """Turn DRF's ErrorDetail trees into plain JSON (strings, lists and dicts)."""
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _first_message(fields: dict[str, Any]) -> str:
    """A one-line summary naming the first offending field, e.g. ``name: Ensure this ...``."""
    for key, value in fields.items():
        while isinstance(value, list | dict) and value:
            value = value[0] if isinstance(value, list) else next(iter(value.values()))
        prefix = "" if key in ("non_field_errors", "__all__") else f"{key}: "
        return f"{prefix}{value}"
    return "Invalid input."


def error_body(
    status_code: int, message: str, *, code: str | None = None, fields: dict | None = None
) -> dict:
    body: dict[str, Any] = {"error": code or _CODES.get(status_code, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return body


def _django_validation_fields(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"non_field_errors": exc.messages}


def _is_storage_outage(exc: Exception) -> bool:
    """S3 answering 5xx or unreachable (botocore/boto3 errors), or the artifact disk failing."""
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return isinstance(exc, OSError)
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
        return status >= 500
    return isinstance(exc, BotoCoreError | Boto3Error | OSError)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler giving every error the Modelyard envelope."""
    if isinstance(exc, RequestDataTooBig):
        # DRF reads request.body before our parser sees the length: Django refuses it unread.
        limit = min(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0, settings.MODELYARD_MAX_JSON_BYTES)
        return Response(error_body(413, f"The request body is larger than {limit} bytes."), status=413)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_fields(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404 | ObjectDoesNotExist):
        exc = exceptions.NotFound(str(exc) if isinstance(exc, Http404) and str(exc) else None)
    elif isinstance(exc, Conflict):
        fields = {exc.field: [exc.message]} if exc.field else None
        return Response(error_body(409, exc.message, code=exc.code, fields=fields), status=409)
    elif isinstance(exc, DataError):
        # A value the database cannot hold (a time zone offset beyond ±15:59 on PostgreSQL, an
        # integer past 64 bits): bad input, named by the database's own first line.
        detail = str(exc).splitlines()[0] if str(exc) else "a value is out of range"
        return Response(error_body(400, f"A value cannot be stored or compared: {detail}"), status=400)
    elif isinstance(exc, OperationalError | InterfaceError):
        # The connection dropped or the server is restarting: the transaction was rolled back.
        logger.error("database unavailable: %s", exc)
        return Response(
            error_body(
                503,
                "The database is unavailable; nothing was changed. Retry the request.",
                code="unavailable",
            ),
            status=503,
            headers={"Retry-After": "5"},
        )
    elif isinstance(exc, BlobMissing):
        # Data loss outside Modelyard (a deleted bucket key or file): say so, do not invite retries.
        logger.error("artifact store lost bytes: %s", exc)
        return Response(
            error_body(
                503,
                "The stored bytes of this file are missing from the artifact store; an operator "
                "should restore them (manage.py verify_artifacts lists every damaged file).",
                code="blob_missing",
            ),
            status=503,
        )
    elif _is_storage_outage(exc):
        logger.error("artifact storage unavailable: %s: %s", type(exc).__name__, exc)
        return Response(
            error_body(
                503,
                "The artifact store is unavailable; nothing was kept. Retry the request.",
                code="unavailable",
            ),
            status=503,
            headers={"Retry-After": "5"},
        )
    elif isinstance(exc, IntegrityError):
        # A uniqueness race lost against a concurrent writer; services catch the expected ones.
        logger.warning("integrity error answered as 409: %s", exc)
        return Response(error_body(409, "The request conflicts with a concurrent change; retry it."), 409)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(data if isinstance(data, dict) else {"non_field_errors": data})
        response.data = error_body(400, _first_message(fields), fields=fields)
    else:
        detail = data.get("detail", "") if isinstance(data, dict) else data
        code = getattr(exc, "default_code", None) if isinstance(exc, exceptions.APIException) else None
        if code in ("error", "invalid", None):
            code = _CODES.get(response.status_code)
        response.data = error_body(response.status_code, str(detail), code=code)
    return response


class StrictSerializer(serializers.Serializer):
    """Rejects keys the serializer does not accept, and strings given as other JSON types.

    A typo such as ``{"descripton": "..."}`` must be a 400 naming the field, not a 200 that
    changed nothing.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            problems = {}
            for key, value in data.items():
                if key not in writable:
                    problems[key] = ["This field is read-only." if key in self.fields else "Unknown field."]
                elif isinstance(self.fields[key], serializers.CharField | serializers.ChoiceField) and not (
                    value is None or isinstance(value, str)
                ):
                    # DRF would coerce 123 to "123"; a wrong JSON type is a client bug to report.
                    problems[key] = [f"Expected a string, got {type(value).__name__}."]
            if problems:
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    """ModelSerializer with :class:`StrictSerializer`'s unknown-field check."""


def json_error(status_code: int, message: str, *, code: str | None = None) -> JsonResponse:
    """A plain-Django JSON error in the API envelope (for 404/500 handlers and non-DRF views)."""
    return JsonResponse(error_body(status_code, message, code=code), status=status_code)
