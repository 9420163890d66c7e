"""Permission-scoped reads of the catalog. Filtering is the FilterSets' job."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db.models import Prefetch, Q, QuerySet

from models_app.auth_backends import team_roles
from models_app.choices import TeamRole, Visibility
from models_app.models import AccessToken, AuditEvent, ModelAlias, ModelVersion, Promotion, RegisteredModel


def _visible_q(user, prefix: str = "") -> Q:
    """Rows of models that ``user`` may read: internal ones, and private ones of their teams."""
    return Q(**{f"{prefix}visibility": Visibility.INTERNAL}) | Q(
        **{f"{prefix}team_id__in": list(team_roles(user))}
    )


def _anonymous(user, qs: QuerySet, prefix: str = "") -> QuerySet:
    """Anonymous callers see nothing, unless an entry point vouched for read-only access to
    internal models (the MLflow API with ``MODELYARD_MLFLOW_ANONYMOUS_READ``)."""
    if getattr(user, "may_read_internal", False):
        return qs.filter(**{f"{prefix}visibility": Visibility.INTERNAL})
    return qs.none()


def registered_model_list(*, user) -> QuerySet[RegisteredModel]:
    """Models ``user`` may see, with what list pages show prefetched."""
    qs = RegisteredModel.objects.select_related("team", "created_by").prefetch_related(
        "tags", Prefetch("aliases", queryset=ModelAlias.objects.select_related("version"))
    )
    if not user.is_authenticated:
        return _anonymous(user, qs)
    if user.is_superuser:
        return qs
    return qs.filter(_visible_q(user))


def registered_model_get(*, user, name: str) -> RegisteredModel:
    """The visible model called ``name`` (any case); raises ``RegisteredModel.DoesNotExist``."""
    return registered_model_list(user=user).get(name__iexact=name)


def model_version_list(*, user, model: RegisteredModel | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("model", "model__team", "created_by").prefetch_related(
        "tags", "aliases"
    )
    if model is not None:
        qs = qs.filter(model=model)
    if not user.is_authenticated:
        return _anonymous(user, qs, "model__")
    if user.is_superuser:
        return qs
    return qs.filter(_visible_q(user, "model__"))


def model_version_get(*, user, model: RegisteredModel, version: int) -> ModelVersion:
    return model_version_list(user=user, model=model).get(version=version)


def model_alias_list(*, model: RegisteredModel) -> QuerySet[ModelAlias]:
    """Aliases of a model the caller has already been allowed to see."""
    return model.aliases.select_related("version", "updated_by").order_by("alias")


def team_list_for_contribution(*, user) -> QuerySet[Group]:
    """Teams in which ``user`` may create models."""
    if user.is_superuser:
        return Group.objects.order_by("name")
    ids = [team_id for team_id, role in team_roles(user).items() if role == TeamRole.CONTRIBUTOR]
    return Group.objects.filter(pk__in=ids).order_by("name")


def access_token_list(*, user) -> QuerySet[AccessToken]:
    """The caller's own tokens (admins manage everyone's in Django admin)."""
    return AccessToken.objects.filter(user=user).order_by("-created_at")


def promotion_list(*, user) -> QuerySet[Promotion]:
    """Promotion requests on models ``user`` may see (an approver's queue filters by state)."""
    qs = Promotion.objects.select_related(
        "version__model__team", "requested_by", "decided_by"
    ).prefetch_related("approvals__approver")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(_visible_q(user, "version__model__"))


def audit_event_list(*, user) -> QuerySet[AuditEvent]:
    """Admins read the whole log; contributors and approvers read their teams' models' events."""
    qs = AuditEvent.objects.all()
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    teams = [
        tid for tid, role in team_roles(user).items() if role in (TeamRole.CONTRIBUTOR, TeamRole.APPROVER)
    ]
    return qs.filter(team_id__in=teams)


def team_list(*, user) -> QuerySet[Group]:
    """Admins see every team; others the teams they belong to."""
    qs = Group.objects.order_by("name").prefetch_related("memberships__user")
    if user.is_superuser:
        return qs
    return qs.filter(pk__in=list(team_roles(user)))
