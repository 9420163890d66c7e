"""Permission-scoped reads of deployments: visible with the model they serve."""

from __future__ import annotations

from django.db.models import QuerySet

from deployments_app.models import Deployment, DeploymentEvent, DeploymentLogLine
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


ROUTE_FIELDS = (
    "id",
    "name",
    "endpoint_url",
    "status",
    "desired_state",
    "model__team_id",
    "model__visibility",
)


def deployment_route(*, user, **lookup) -> tuple[Deployment, int, str] | None:
    """What the inference proxy needs about one deployment, in one small query.

    Returns ``(deployment, team_id, visibility)`` — the deployment carries only the routing
    fields — or None when it does not exist. Visibility is checked by the caller, because the
    proxy is the hot path: a full ``deployment_list`` row with its joins costs more to build than
    forwarding the request.
    """
    row = Deployment.objects.filter(**lookup).values(*ROUTE_FIELDS).first()
    if row is None:
        return None
    deployment = Deployment(
        pk=row["id"],
        name=row["name"],
        endpoint_url=row["endpoint_url"],
        status=row["status"],
        desired_state=row["desired_state"],
    )
    return deployment, row["model__team_id"], row["model__visibility"]


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
