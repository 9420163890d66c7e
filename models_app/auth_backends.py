"""Authorization backend that turns team roles into Django permissions.

``user.has_perm(codename)`` (no object) answers "does any of my roles grant this?", which
gates an endpoint; ``user.has_perm(codename, obj)`` answers for the team that owns ``obj``.
Superusers are answered by Django itself before any backend is asked.
"""

from __future__ import annotations

from django.contrib.auth.models import Group

from models_app.choices import Visibility
from models_app.roles import READ_PERMISSIONS, ROLE_PERMISSIONS, VISIBLE_SCOPE_PERMISSIONS

_CACHE_ATTR = "_modelyard_team_roles"


def team_roles(user) -> dict[int, str]:
    """``{team_id: role}`` for ``user``, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        from models_app.models import TeamMembership

        cached = dict(TeamMembership.objects.filter(user=user).values_list("team_id", "role"))
        setattr(user, _CACHE_ATTR, cached)
    return cached


def remember_team_roles(user, roles: dict[int, str]) -> None:
    """Cache roles read together with the user (the token lookup joins them in)."""
    setattr(user, _CACHE_ATTR, roles)


def forget_team_roles(user) -> None:
    """Drop the cached roles after memberships change."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def _team_id_of(obj) -> int | None:
    if isinstance(obj, Group):
        return obj.pk
    return getattr(obj, "permission_team_id", None)


def _is_visible(obj, roles: dict[int, str]) -> bool:
    """Internal models are visible to every signed-in user, private ones to their team."""
    model = getattr(obj, "permission_model", obj)
    if getattr(model, "visibility", None) == Visibility.INTERNAL:
        return True
    return _team_id_of(obj) in roles


class TeamRoleBackend:
    """Grants the codenames of the user's role in the owning team of an object."""

    def authenticate(self, request, **credentials):  # authentication is not this backend's job
        return None

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        if not user_obj.is_active or user_obj.is_anonymous:
            return False
        roles = team_roles(user_obj)
        if obj is None:
            return perm in READ_PERMISSIONS or any(perm in ROLE_PERMISSIONS[r] for r in roles.values())
        team_id = _team_id_of(obj)
        if team_id is None:
            return False
        role = roles.get(team_id)
        if role is not None and perm in ROLE_PERMISSIONS[role]:
            return True
        if perm in READ_PERMISSIONS or perm in VISIBLE_SCOPE_PERMISSIONS:
            if perm in VISIBLE_SCOPE_PERMISSIONS and not any(
                perm in ROLE_PERMISSIONS[r] for r in roles.values()
            ):
                return False
            return _is_visible(obj, roles)
        return False

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        perms = set(READ_PERMISSIONS)
        for role in team_roles(user_obj).values():
            perms |= ROLE_PERMISSIONS[role]
        return perms
