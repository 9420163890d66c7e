"""OpenAPI schema generation: every operation documents the JSON error envelope.

drf-spectacular documents only the success answer of an operation. Every API view can also
answer with the envelope of :mod:`registry_project.api` (400 bad input, 401 no or bad token,
403 not allowed, 404 not visible, 409 conflict, 413/415 unacceptable body, 429 throttled,
503 a backend outage), so clients and the schemathesis fuzz test see them as documented
answers. New endpoints pick this up without any annotation.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """``{"error": "<code>", "message": "<sentence>", "fields": {"<field>": [...]}}``"""

    error = serializers.CharField(help_text="A stable code: invalid, not_found, conflict, ...")
    message = serializers.CharField(help_text="One human sentence, naming the first bad field.")
    fields = serializers.DictField(required=False, help_text="Problems by field name.")

    class Meta:
        ref_name = "Error"


# Answers any operation may give; bodies are only sent by writes, hence the second set.
ERROR_CODES = ("400", "401", "403", "404", "406", "429", "503")
BODY_ERROR_CODES = ("409", "411", "413", "415")
_DESCRIPTIONS = {
    "400": "Bad input; `fields` names each offending field.",
    "401": "No credentials, or a token that is unknown, expired or revoked.",
    "403": "Authenticated, but the role or the token scope does not allow this.",
    "404": "Not found, or not visible to the caller.",
    "406": "The Accept header asks for a type the API does not produce.",
    "409": "Conflicts with the current state (name taken, version not pending, digest mismatch).",
    "411": "A streamed body needs a Content-Length.",
    "413": "The body is larger than the configured limit.",
    "415": "Unsupported Content-Type.",
    "429": "Too many requests; retry later.",
    "503": "A backend (database, artifact store) is unavailable; retry later.",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ERROR_CODES + (BODY_ERROR_CODES if self.method in ("POST", "PUT", "PATCH") else ())
        for code in codes:
            if code not in responses:
                body = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                body["description"] = _DESCRIPTIONS[code]
                responses[code] = body
        return responses
