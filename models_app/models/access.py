"""Who may do what: team memberships with a role, and personal access tokens."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from models_app.choices import TeamRole, TokenScope

TOKEN_PREFIX = "myd_"


class TeamMembership(models.Model):
    """A user's role in a team (a Django Group). One role per user per team."""

    team = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TeamRole.choices, default=TeamRole.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="teammembership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class AccessToken(models.Model):
    """A personal access token, sent as ``Authorization: Bearer <token>``.

    Only the SHA-256 digest of the token is stored; the token itself is shown once, when
    created. Tokens are 256-bit random values, so a fast hash is enough: nothing to brute-force.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the token, to recognise it in lists ("myd_Ab3x...").
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def digest_of(raw_token: str) -> str:
        return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def has_scope(self, required: str) -> bool:
        from models_app.roles import scopes_allow

        return scopes_allow(self.scopes, required)


__all__ = ["TOKEN_PREFIX", "AccessToken", "TeamMembership", "TokenScope"]
