"""Plumbing shared by every MLflow endpoint: authentication, parameters, the error envelope.

Views are plain Django functions wrapped by :func:`endpoint`, which

- authenticates ``Authorization: Bearer <personal access token>`` (``MLFLOW_TRACKING_TOKEN``) or
  ``Basic <username:personal access token>`` (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``),
  refusing anonymous callers unless ``MODELYARD_MLFLOW_ANONYMOUS_READ`` allows reads;
- applies token scopes as the native API does (reads need ``read``, writes ``write``);
- reads GET parameters from the query string (repeated keys are lists) and other methods' from
  the JSON body (DELETE too, as the MLflow client sends it);
- turns service exceptions into MLflow's envelope and status codes, never a 500 for bad input.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from functools import wraps

import orjson
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from models_app.choices import TokenScope
from models_app.mlflow import errors
from models_app.mlflow.errors import MlflowError, invalid, missing
from models_app.services import access_token_authenticate
from registry_project import request_context
from registry_project.errors import BlobMissing, Conflict

logger = logging.getLogger(__name__)

_JSON = "application/json"


def json_response(data: dict, status: int = 200) -> HttpResponse:
    # orjson: a page of 100 models with their versions took ~1 ms to encode with json.dumps.
    return HttpResponse(orjson.dumps(data), status=status, content_type=_JSON)


def error_response(exc: MlflowError) -> HttpResponse:
    return json_response(exc.body(), status=exc.status)


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def translate(exc: Exception) -> MlflowError | None:
    """The MLflow error for a service exception, or None for a real bug."""
    if isinstance(exc, MlflowError):
        return exc
    if isinstance(exc, ValidationError):
        return invalid(_validation_message(exc))
    if isinstance(exc, PermissionDenied):
        return MlflowError(str(exc) or "Permission denied.", errors.PERMISSION_DENIED)
    if isinstance(exc, ObjectDoesNotExist):
        return MlflowError(str(exc) or "Not found.", errors.RESOURCE_DOES_NOT_EXIST)
    if isinstance(exc, BlobMissing):
        logger.error("artifact store lost bytes: %s", exc)
        return MlflowError(
            "The stored bytes of this artifact are missing from the artifact store; an operator "
            "should restore them (manage.py verify_artifacts lists every damaged file).",
            errors.TEMPORARILY_UNAVAILABLE,
        )
    if isinstance(exc, Conflict):
        code = errors.RESOURCE_ALREADY_EXISTS if exc.field == "name" else errors.INVALID_PARAMETER_VALUE
        return MlflowError(exc.message, code)
    return None


# --- Authentication ---------------------------------------------------------------------------


def _unauthenticated(message: str) -> MlflowError:
    return MlflowError(message, errors.UNAUTHENTICATED)


def authenticate(request: HttpRequest):
    """``(user, token)`` for the request's credentials; raises 401 for bad ones."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return AnonymousUser(), None
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme == "bearer":
        raw, username = credentials, None
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise _unauthenticated("Malformed Basic credentials.") from exc
        username, _, raw = decoded.partition(":")
    else:
        raise _unauthenticated("Use 'Authorization: Bearer <token>' or Basic with a personal access token.")
    token = access_token_authenticate(raw)
    if token is None or (username is not None and token.user.get_username() != username):
        raise _unauthenticated("The token is invalid, expired or revoked (or not this user's).")
    request_context.set_token(token.pk)
    return token.user, token


# --- Parameters -------------------------------------------------------------------------------


class Params:
    """Request fields: the query string for GET, the JSON body otherwise."""

    def __init__(self, request: HttpRequest) -> None:
        self.is_query = request.method in ("GET", "HEAD")
        if self.is_query:
            self.data = {key: request.GET.getlist(key) for key in request.GET}
            return
        body = request.body
        if not body.strip():
            self.data = {}
            return
        if len(body) > settings.MODELYARD_MAX_JSON_BYTES:
            raise invalid(f"The JSON body is larger than {settings.MODELYARD_MAX_JSON_BYTES} bytes.")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MlflowError(f"Malformed JSON body: {exc}", errors.BAD_REQUEST) from exc
        if not isinstance(data, dict):
            raise MlflowError("The JSON body must be an object.", errors.BAD_REQUEST)
        self.data = data

    def _raw(self, name: str):
        value = self.data.get(name)
        if self.is_query and isinstance(value, list):
            return value[-1] if value else None
        return value

    def str(self, name: str, *, required: bool = False, default: str = "") -> str:
        value = self._raw(name)
        if value is None or value == "":
            if required:
                raise missing(name)
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a string.")
        return str(value)

    def int(self, name: str, *, default: int | None = None) -> int | None:
        value = self._raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise invalid(f"Invalid value {value!r} for parameter '{name}': expected an integer.")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise invalid(f"Invalid value {value!r} for parameter '{name}': expected an integer.") from exc

    def float(self, name: str, *, required: bool = False) -> float | None:
        value = self._raw(name)
        if value is None or value == "":
            if required:
                raise missing(name)
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a number.") from exc

    def bool(self, name: str, *, default: bool = False) -> bool:
        value = self._raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1"):
            return True
        if str(value).lower() in ("false", "0"):
            return False
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected true or false.")

    def list(self, name: str) -> list:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            return [value]
        return value

    def key_values(self, name: str, key: str = "key") -> dict[str, str]:
        """``[{"key": "a", "value": "1"}, …]`` → ``{"a": "1"}`` with type checks."""
        result = {}
        for item in self.list(name):
            if not isinstance(item, dict) or not isinstance(item.get(key), str):
                raise invalid(f"Invalid value for parameter '{name}': expected [{{'{key}': …, 'value': …}}].")
            value = item.get("value", "")
            if value is None:
                value = ""
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise invalid(f"Invalid value of {name} '{item[key]}': expected a string.")
            result[item[key]] = str(value)
        return result


def version_number(raw: str) -> int:
    try:
        number = int(raw)
    except (TypeError, ValueError) as exc:
        raise invalid(f"Parameter 'version' must be an integer, got '{raw}'.") from exc
    if number < 1:
        raise invalid(f"Parameter 'version' must be a positive integer, got '{raw}'.")
    return number


# --- The endpoint decorator -------------------------------------------------------------------


def endpoint(*methods: str, write: bool | None = None, parse: bool = True) -> Callable:
    """Wrap ``view(request, params, *args)`` → dict (or an HttpResponse) as an MLflow endpoint.

    ``write`` says whether the call changes state (default: any method but GET); writes need a
    token with the ``write`` scope and are never open to anonymous callers. ``parse=False``
    leaves the body unread (streamed artifact uploads) and passes ``None`` as params.
    """

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return error_response(
                    MlflowError(
                        f"{request.method} is not allowed on {request.path}: use {', '.join(methods)}.",
                        errors.ENDPOINT_NOT_FOUND,
                    )
                )
            is_write = write if write is not None else request.method not in ("GET", "HEAD")
            try:
                user, token = authenticate(request)
                if not user.is_authenticated and (is_write or not settings.MODELYARD_MLFLOW_ANONYMOUS_READ):
                    raise _unauthenticated(
                        "Authentication required: set MLFLOW_TRACKING_TOKEN to a Modelyard "
                        "personal access token."
                    )
                if token is not None:
                    needed = TokenScope.WRITE if is_write else TokenScope.READ
                    if not token.has_scope(needed):
                        raise MlflowError(
                            f"This token lacks the '{needed}' scope that this request needs.",
                            errors.PERMISSION_DENIED,
                        )
                if not user.is_authenticated:
                    user.may_read_internal = True  # read-only: writes were refused above
                request.user = user
                params = Params(request) if parse else None
                result = view(request, params, *args, **kwargs)
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    logger.exception("MLflow endpoint %s failed", request.path)
                    mapped = MlflowError("Internal error; see the server log.", errors.INTERNAL_ERROR)
                return error_response(mapped)
            if isinstance(result, HttpResponseBase):
                return result
            return json_response(result)

        return wrapper

    return decorate
