"""REST permission classes: token scopes, and Django codenames for every write.

Object-level rules (which team owns what) are enforced by the services and the selectors;
these classes give the early, global answer: "is this caller allowed to write at all?".
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from models_app.choices import TokenScope
from models_app.models import AccessToken


class TokenScopePermission(BasePermission):
    """Requires a signed-in caller; a token must carry the scope the request needs.

    Reads need ``read``, writes ``write``; a view may ask for more with ``required_scope``.
    Session-authenticated callers (the UI) are not narrowed by scopes.
    """

    message = "This token does not have the scope this request needs."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        token = request.auth
        if not isinstance(token, AccessToken):
            return True
        required = getattr(view, "required_scope", None) or (
            TokenScope.READ if request.method in SAFE_METHODS else TokenScope.WRITE
        )
        if not token.has_scope(required):
            self.message = f"This token lacks the '{required}' scope that this request needs."
            return False
        return True


class CodenamePermission(BasePermission):
    """Maps HTTP methods to Django codenames of ``view.permission_model`` (NetBox style).

    GET needs ``view_<model>``, POST ``add_``, PUT/PATCH ``change_``, DELETE ``delete_``; a
    custom action names its codename in ``view.action_permissions``, and a plain APIView may map
    methods itself in ``view.method_permissions`` (``None``: any signed-in caller). With no object this asks
    "does any role of mine grant it?"; the services then check the object's own team.
    """

    perms_map = {
        "GET": "view",
        "HEAD": "view",
        "OPTIONS": None,
        "POST": "add",
        "PUT": "change",
        "PATCH": "change",
        "DELETE": "delete",
    }

    def required_permission(self, request, view) -> str | None:
        method_perms = getattr(view, "method_permissions", None)
        if method_perms is not None and request.method in method_perms:
            return method_perms[request.method]
        action_perms = getattr(view, "action_permissions", None) or {}
        action = getattr(view, "action", None)
        if action in action_perms:
            return action_perms[action]
        model = getattr(view, "permission_model", None)
        if model is None:
            queryset = getattr(view, "queryset", None)
            model = queryset.model if queryset is not None else None
        verb = self.perms_map.get(request.method)
        if model is None or verb is None:
            return None
        return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"

    def has_permission(self, request, view) -> bool:
        perm = self.required_permission(request, view)
        return perm is None or request.user.has_perm(perm)

    def has_object_permission(self, request, view, obj) -> bool:
        perm = self.required_permission(request, view)
        if perm is None:
            return True
        if not hasattr(obj, "permission_team_id"):
            # Not owned by a team (a webhook, a token): the global answer above stands, and the
            # view's queryset and the services decide whose object it is.
            return True
        return request.user.has_perm(perm, obj)
