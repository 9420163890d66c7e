"""Validators for names, tag keys and alias names, shared by models, serializers and forms."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

MODEL_NAME_RE = r"[A-Za-z0-9._-]{1,128}"
ALIAS_RE = r"[A-Za-z_][A-Za-z0-9_-]{0,254}"

validate_model_name_chars = RegexValidator(
    regex=rf"^{MODEL_NAME_RE}\Z",
    message="Use 1-128 letters, digits, '.', '_' or '-'.",
    code="invalid_name",
)


def validate_model_name(value: str) -> None:
    validate_model_name_chars(value)
    if set(value) == {"."}:
        raise ValidationError("A name cannot consist only of dots.", code="invalid_name")


TAG_KEY_MAX = 250
TAG_VALUE_MAX = 5000
_TAG_KEY = re.compile(r"^[\w.\-:/ ]{1,250}\Z")


def validate_tag_key(value: str) -> None:
    if not _TAG_KEY.match(value) or value != value.strip():
        raise ValidationError(
            "Use 1-250 letters, digits, spaces or '_ - . : /', without leading or trailing spaces.",
            code="invalid_tag_key",
        )


def validate_tag_value(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("A tag value cannot contain NUL characters.", code="invalid_tag_value")


_ALIAS = re.compile(rf"^{ALIAS_RE}\Z")
_VERSION_LIKE = re.compile(r"^v?\d+\Z", re.IGNORECASE)


def validate_alias(value: str) -> None:
    if value.lower() == "latest":
        raise ValidationError("'latest' is reserved: it always means the newest version.", code="reserved")
    if _VERSION_LIKE.match(value):
        raise ValidationError(
            "An alias cannot look like a version number (such as '3' or 'v3').", code="reserved"
        )
    if not _ALIAS.match(value):
        raise ValidationError(
            "Use 1-255 letters, digits, '_' or '-', starting with a letter or '_'.", code="invalid_alias"
        )
