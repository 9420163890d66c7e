"""Who sees which MLflow tracking objects (experiments, runs, logged models).

Runs and logged models belong to a team and a creator: the creator, members of the team (any
role) and admins read them; the creator, the team's contributors and admins write to them.
Experiments without a team (the default experiment ``0``) are open to every signed-in user,
but the runs inside stay scoped as above.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from lineage_app.models import MlflowArtifact, MlflowExperiment, MlflowLoggedModel, MlflowRun
from models_app.auth_backends import team_roles
from models_app.choices import TeamRole


def _owned_q(user) -> Q:
    return Q(created_by=user) | Q(team_id__in=list(team_roles(user)))


def experiment_list(*, user) -> QuerySet[MlflowExperiment]:
    qs = MlflowExperiment.objects.all()
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(Q(team__isnull=True) | _owned_q(user))


def run_list(*, user) -> QuerySet[MlflowRun]:
    qs = MlflowRun.objects.select_related("experiment", "created_by")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(_owned_q(user))


def run_get(*, user, run_id: str) -> MlflowRun:
    """The visible run ``run_id``; raises ``MlflowRun.DoesNotExist``."""
    return run_list(user=user).get(run_id=run_id)


def logged_model_list(*, user) -> QuerySet[MlflowLoggedModel]:
    qs = MlflowLoggedModel.objects.select_related("experiment", "source_run", "created_by")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(_owned_q(user))


def logged_model_get(*, user, model_id: str) -> MlflowLoggedModel:
    return logged_model_list(user=user).get(model_id=model_id)


def artifact_list(*, user, prefix: str) -> QuerySet[MlflowArtifact]:
    """Artifacts under ``prefix/`` of runs and logged models ``user`` may read."""
    qs = MlflowArtifact.objects.filter(
        path__startswith=prefix.rstrip("/") + "/" if prefix else ""
    ).select_related("blob")
    if user.is_superuser:
        return qs
    return qs.filter(
        Q(run__in=run_list(user=user).values("pk"))
        | Q(logged_model__in=logged_model_list(user=user).values("pk"))
    )


def can_write(user, obj) -> bool:
    """May ``user`` change this run, logged model or experiment (or add runs to it)?"""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    if obj.created_by_id is not None and obj.created_by_id == user.pk:
        return True
    if obj.team_id is None:
        # The shared default experiment: anyone who may register models may log into it.
        return isinstance(obj, MlflowExperiment) and user.has_perm("models_app.add_modelversion")
    return team_roles(user).get(obj.team_id) == TeamRole.CONTRIBUTOR
