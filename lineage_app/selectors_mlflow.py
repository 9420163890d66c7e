"""Who sees which MLflow tracking objects (experiments, runs, logged models).

Runs and logged models belong to a team and a creator: the creator, members of the team (any
role) and admins read them; the creator, the team's contributors and admins write to them.
Experiments without a team (the default experiment ``0``) are open to every signed-in user,
but the runs inside stay scoped as above.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q, QuerySet

from lineage_app.models import MlflowArtifact, MlflowExperiment, MlflowLoggedModel, MlflowRun
from models_app.auth_backends import team_roles
from models_app.choices import TeamRole
from models_app.models import Blob
from registry_project import rawsql


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


class _SourceStatements:
    """What registering a version from a logged model reads, hand-written (see
    ``registry_project.rawsql``): the logged model with its source run and the run's creator in
    one query (the ORM compiled three joins per call), and the files under an artifact root with
    their sizes."""

    def __init__(self) -> None:
        user_model = get_user_model()
        self.logged = rawsql.ModelColumns(MlflowLoggedModel, "lm")
        self.run = rawsql.ModelColumns(MlflowRun, "r")
        self.user = rawsql.ModelColumns(user_model, "u")
        self.logged_sql = (
            f"SELECT {self.logged.sql}, {self.run.sql}, {self.user.sql} "  # noqa: S608 - names only
            f"FROM {rawsql.table(MlflowLoggedModel)} lm "
            f"LEFT JOIN {rawsql.table(MlflowRun)} r ON r.id = lm.source_run_id "
            f"LEFT JOIN {rawsql.table(user_model)} u ON u.id = r.created_by_id "
            "WHERE lm.model_id = %s"
        )
        self.files_sql = (
            f"SELECT a.path, a.blob_id, b.size FROM {rawsql.table(MlflowArtifact)} a "  # noqa: S608
            f"JOIN {rawsql.table(Blob)} b ON b.sha256 = a.blob_id WHERE a.path LIKE %s ESCAPE '\\' "
            "ORDER BY a.path"
        )


_source_statements = cache(_SourceStatements)


def _owned_sql(user, alias: str) -> tuple[str, list]:
    """``_owned_q`` as SQL: created by ``user`` or owned by one of the user's teams."""
    teams = sorted(team_roles(user))
    if not teams:
        return f" AND {alias}.created_by_id = %s", [user.pk]
    in_teams, params = rawsql.id_in(f"{alias}.team_id", teams)
    return f" AND ({alias}.created_by_id = %s OR {in_teams})", [user.pk, *params]


def logged_model_source(*, user, model_id: str) -> MlflowLoggedModel:
    """The visible logged model ``model_id`` with ``source_run`` (and its ``created_by``) loaded,
    as ``logged_model_get`` gives it; raises ``MlflowLoggedModel.DoesNotExist``."""
    if not user.is_authenticated:
        raise MlflowLoggedModel.DoesNotExist(f"Logged model {model_id} not found.")
    sql = _source_statements()
    owned, params = ("", []) if user.is_superuser else _owned_sql(user, "lm")
    rows = rawsql.fetch(sql.logged_sql + owned, [model_id, *params], prepared=True)
    if not rows:
        raise MlflowLoggedModel.DoesNotExist(f"Logged model {model_id} not found.")
    logged = sql.logged.build(rows[0])
    run_at, user_at = sql.logged.width, sql.logged.width + sql.run.width
    run = sql.run.build(rows[0], run_at) if rows[0][run_at] is not None else None
    if run is not None:
        run.created_by = sql.user.build(rows[0], user_at) if rows[0][user_at] is not None else None
    logged.source_run = run
    return logged


def artifact_files(prefix: str) -> list[tuple[str, str, int]]:
    """``(path below prefix, sha256, size)`` of every artifact under ``prefix/``, by path. The
    caller has checked that the actor may read what is under ``prefix``. Not prepared: a prefix
    match uses the path index only when planned for its value."""
    pattern = connection.ops.prep_for_like_query(prefix + "/") + "%"
    rows = rawsql.fetch(_source_statements().files_sql, [pattern])
    return [(path[len(prefix) + 1 :], sha, size) for path, sha, size in rows]


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
