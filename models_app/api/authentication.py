"""Bearer personal access tokens for the REST API."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from models_app.services import access_token_authenticate
from registry_project import request_context


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer myd_…``. Sets ``request.auth`` to the AccessToken."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header: use 'Bearer <token>'."))
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed(_("The token contains invalid characters.")) from exc
        token = access_token_authenticate(raw)
        if token is None:
            raise exceptions.AuthenticationFailed(_("The token is invalid, expired or revoked."))
        request_context.set_token(token.pk)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="modelyard"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents bearer tokens in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "BearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal access token (myd_…)."}
