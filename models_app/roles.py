"""What each team role may do, expressed in Django permission codenames.

Codenames are the one permission vocabulary of Modelyard: the API, the UI, admin and
templates all ask ``user.has_perm("models_app.change_registeredmodel", model)``. A user's
role in a model's owning team decides the answer for that model (``TeamRoleBackend``).
"""

from __future__ import annotations

from models_app.choices import TeamRole, TokenScope

# Reading is scoped by visibility (selectors), so every signed-in user holds these globally.
READ_PERMISSIONS: frozenset[str] = frozenset(
    {
        "models_app.view_registeredmodel",
        "models_app.view_modelversion",
        "models_app.view_modelalias",
        "models_app.view_check",
        "models_app.view_promotion",
        "models_app.view_promotionpolicy",
        "models_app.view_aliashistory",
        # Deployments are listed by visibility like the models they serve (selectors).
        "deployments_app.view_deployment",
    }
)

_CONTRIBUTOR = frozenset(
    {
        "models_app.add_registeredmodel",
        "models_app.change_registeredmodel",
        "models_app.delete_registeredmodel",
        "models_app.add_modelversion",
        "models_app.change_modelversion",
        "models_app.delete_modelversion",
        "models_app.add_modelalias",
        "models_app.change_modelalias",
        "models_app.delete_modelalias",
        "models_app.add_check",
        "models_app.change_check",
        "models_app.add_promotion",
        "models_app.change_promotionpolicy",
        "models_app.add_webhook",
    }
)

APPROVE_PROMOTION = "models_app.approve_promotion"

# Calling a deployment's inference API: every role of the owning team (never outsiders, even
# on internal models: predictions cost compute and may reveal more than metadata does).
PREDICT_DEPLOYMENT = "deployments_app.predict_deployment"
# Launching, stopping, redeploying and deleting deployments: deployers only (and admins).
# Contributors publish versions but do not put them into service.
_DEPLOYER = frozenset(
    {
        "deployments_app.add_deployment",
        "deployments_app.change_deployment",
        "deployments_app.delete_deployment",
    }
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    TeamRole.VIEWER: READ_PERMISSIONS | {PREDICT_DEPLOYMENT},
    TeamRole.CONTRIBUTOR: READ_PERMISSIONS | _CONTRIBUTOR | {PREDICT_DEPLOYMENT},
    TeamRole.APPROVER: READ_PERMISSIONS | {APPROVE_PROMOTION, PREDICT_DEPLOYMENT},
    TeamRole.DEPLOYER: READ_PERMISSIONS | _DEPLOYER | {PREDICT_DEPLOYMENT},
}

# Codenames a role grants on every model its holder can see, not only on the team's own: an
# approver reviews promotions across the catalog (never their own request under four eyes).
VISIBLE_SCOPE_PERMISSIONS: frozenset[str] = frozenset({APPROVE_PROMOTION})

# A token scope includes the scopes below it: admin > write > read.
SCOPE_RANK: dict[str, int] = {TokenScope.READ: 1, TokenScope.WRITE: 2, TokenScope.ADMIN: 3}
# Scopes outside the ranking: held explicitly, or implied by ``admin`` only. A read or write
# token (a CI job's) cannot call inference, and a predict token (a consumer's) can do nothing else.
SIDE_SCOPES: frozenset[str] = frozenset({TokenScope.PREDICT})


def scopes_allow(granted: list[str] | tuple[str, ...], required: str) -> bool:
    """True when a token holding ``granted`` scopes may act at the ``required`` scope."""
    if required in SIDE_SCOPES:
        return required in granted or TokenScope.ADMIN in granted
    return max((SCOPE_RANK.get(scope, 0) for scope in granted), default=0) >= SCOPE_RANK[required]
