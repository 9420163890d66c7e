"""Permission-scoped reads of deployments: visible with the model they serve."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from deployments_app.models import Deployment, DeploymentEvent, DeploymentLogLine
from models_app.models import RegisteredModel, TeamMembership
from models_app.selectors import _visible_q


def deployment_list(*, user) -> QuerySet[Deployment]:
    """Deployments of models ``user`` may see (internal ones, and private ones of their teams)."""
    qs = Deployment.objects.select_related("model", "model__team", "version", "requested_by")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(_visible_q(user, "model__"))


def deployment_get_by_name(*, user, name: str) -> Deployment:
    """The visible deployment called ``name``; raises ``Deployment.DoesNotExist``."""
    return deployment_list(user=user).get(name=name)


def _route_sql(column: str) -> str:
    """SQL of the proxy's lookup by ``column`` (table names from the models' metadata)."""
    # Identifiers come from model metadata and a fixed column name; values are parameters.
    return (
        "SELECT d.id, d.name, d.endpoint_url, d.status, d.desired_state, m.team_id, m.visibility,"  # noqa: S608
        f" (SELECT tm.role FROM {TeamMembership._meta.db_table} tm"
        "   WHERE tm.team_id = m.team_id AND tm.user_id = %s)"
        f" FROM {Deployment._meta.db_table} d JOIN {RegisteredModel._meta.db_table} m ON m.id = d.model_id"
        f" WHERE d.{column} = %s"
    )


_ROUTE_SQL = {"pk": _route_sql("id"), "name": _route_sql("name")}


def deployment_route(*, user, pk: int | None = None, name: str | None = None):
    """What the inference proxy needs about one deployment, in one query.

    Returns ``(deployment, team_id, visibility, role)`` — the deployment carries only the routing
    fields; ``role`` is the caller's role in the model's team, None without one — or None when
    no deployment has that id or name. Visibility is checked by the caller. This is the proxy's
    hot path, so it is one hand-written query: the ORM's compilation of the same lookup plus a
    team-roles query cost more than forwarding the request.
    """
    column, value = ("pk", pk) if pk is not None else ("name", name)
    with connection.cursor() as cursor:
        cursor.execute(_ROUTE_SQL[column], [user.pk, value])
        row = cursor.fetchone()
    if row is None:
        return None
    pk_, name_, endpoint_url, status, desired_state, team_id, visibility, role = row
    deployment = Deployment(
        pk=pk_, name=name_, endpoint_url=endpoint_url, status=status, desired_state=desired_state
    )
    return deployment, team_id, visibility, role


def deployment_events(*, deployment: Deployment, limit: int = 50) -> list[DeploymentEvent]:
    """The latest events of a deployment, oldest first."""
    rows = list(deployment.events.select_related("actor").order_by("-id")[:limit])
    return rows[::-1]


def deployment_log_tail(
    *, deployment: Deployment, limit: int = 100, after_id: int = 0
) -> list[DeploymentLogLine]:
    """The last captured log lines (build and worker), oldest first; ``after_id`` for polling."""
    qs = deployment.log_lines.filter(id__gt=after_id).order_by("-id")
    return list(qs[:limit])[::-1]


# Statuses in which a deployment serves (or is about to serve) the version: what "deployed" means
# when lineage asks which vulnerable versions are live.
LIVE_STATUSES = ("queued", "building", "starting", "running")


def deployments_of_versions(*, user, version_ids) -> dict[int, list[dict]]:
    """``{version_id: [{"id", "name", "status", "target"}, ...]}`` of the deployments ``user`` may see.

    One query for any number of versions (lineage's exposure and advisory answers use it).
    """
    rows = (
        deployment_list(user=user)
        .filter(version_id__in=list(version_ids))
        .order_by("name")
        .values("version_id", "id", "name", "status", "target")
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        version_id = row.pop("version_id")
        row["live"] = row["status"] in LIVE_STATUSES
        found.setdefault(version_id, []).append(row)
    return found
