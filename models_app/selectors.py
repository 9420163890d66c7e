"""Permission-scoped reads of the catalog. Filtering is the FilterSets' job."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL

from models_app.auth_backends import team_roles
from models_app.choices import Stage, TeamRole, Visibility
from models_app.models import AccessToken, AuditEvent, ModelAlias, ModelVersion, Promotion, RegisteredModel


def _visible_q(user, prefix: str = "") -> Q:
    """Rows of models that ``user`` may read: internal ones, and private ones of their teams."""
    return Q(**{f"{prefix}visibility": Visibility.INTERNAL}) | Q(
        **{f"{prefix}team_id__in": list(team_roles(user))}
    )


def visible_models_sql(user, alias: str) -> tuple[str, list]:
    """The rule of ``_visible_q``/``_anonymous`` as an SQL condition on the models table under
    ``alias``, for the hand-written reads of hot paths (the MLflow API). Keep the two in step:
    the permission matrix tests walk both."""
    if not user.is_authenticated:
        if getattr(user, "may_read_internal", False):
            return f"{alias}.visibility = %s", [Visibility.INTERNAL.value]
        return "1 = 0", []
    if user.is_superuser:
        return "1 = 1", []
    teams = list(team_roles(user))
    if not teams:
        return f"{alias}.visibility = %s", [Visibility.INTERNAL.value]
    placeholders = ", ".join(["%s"] * len(teams))
    return f"({alias}.visibility = %s OR {alias}.team_id IN ({placeholders}))", [
        Visibility.INTERNAL.value,
        *teams,
    ]


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


# --- Catalog pages: facets, headline metrics ------------------------------------------------

# When a model does not name its headline metric (tag ``headline_metric``), the first of these
# that its run recorded is shown; failing that, the first metric by name.
HEADLINE_METRIC_PREFERENCE = (
    "accuracy", "auc", "roc_auc", "f1", "f1_score", "precision", "recall", "r2", "rmse", "mae", "mape",
    "log_loss", "bleu", "rouge_l", "perplexity",
)  # fmt: skip
HEADLINE_TAG = "headline_metric"
TAG_FACET_LIMIT = 15


def _members(queryset: QuerySet | None, ids: list[int] | None):
    """The model ids to count, as something ``__in`` takes: the (visibility-scoped) queryset as a
    subquery, or the given ids. On PostgreSQL a list of ids is sent as one array parameter, not
    thousands of placeholders (a search can pass 5,000)."""
    if ids is None:
        return queryset.order_by().values("pk")
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [list(ids)])
    return ids


def catalog_facets(*, queryset: QuerySet[RegisteredModel] | None = None, ids: list[int] | None = None):
    """Counts of task, framework, team, stage and tag over the models of ``queryset`` or ``ids``.

    Both must come from a visibility-scoped selector: counting only those rows, a model the user
    may not see is never counted. Three grouped queries (and the team names) whatever the number
    of models; pass ``ids`` when the set is expensive to compute (a search), so it is not
    evaluated three times.
    """
    from models_app.filtersets import FRAMEWORK_TAG, TASK_TAG
    from models_app.models import ModelTag

    members = _members(queryset, ids)
    tag_rows = (
        ModelTag.objects.filter(model_id__in=members)
        .values_list("key", "value")
        .annotate(n=Count("model_id"))
        .order_by("-n", "key", "value")
    )
    by_key: dict[str, list[tuple[str, int]]] = {TASK_TAG: [], FRAMEWORK_TAG: []}
    other: list[tuple[str, int]] = []
    for key, value, n in tag_rows:
        if key in by_key:
            if value:
                by_key[key].append((value, n))
        elif key != HEADLINE_TAG and len(other) < TAG_FACET_LIMIT:
            other.append((f"{key}={value}" if value else key, n))
    # Grouped by team id on the models themselves (no join), named afterwards: teams are few.
    team_counts = (
        (queryset.order_by() if ids is None else RegisteredModel.objects.filter(pk__in=members))
        .values_list("team_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    team_counts = dict(team_counts)
    names = dict(Group.objects.filter(pk__in=list(team_counts)).values_list("pk", "name"))
    teams = sorted(((names[t], n) for t, n in team_counts.items() if t in names), key=lambda r: (-r[1], r[0]))
    stages = dict(
        ModelVersion.objects.filter(model_id__in=members)
        .values_list("stage")
        .annotate(n=Count("model_id", distinct=True))
        .order_by()
    )
    labels = dict(Stage.choices)
    order = (Stage.PRODUCTION, Stage.STAGING, Stage.NONE, Stage.ARCHIVED)
    return {
        "task": by_key[TASK_TAG],
        "framework": by_key[FRAMEWORK_TAG],
        "team": list(teams),
        "stage": [(s, stages[s], labels[s]) for s in order if s in stages],
        "tag": other,
    }


def _headline_names(metrics: dict, preferred: str = "") -> list[str]:
    numeric = [k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    wanted = [p.strip() for p in preferred.split(",") if p.strip()]
    ordered = [k for k in wanted if k in numeric]
    ordered += [k for k in HEADLINE_METRIC_PREFERENCE if k in numeric and k not in ordered]
    ordered += sorted(k for k in numeric if k not in ordered)
    return ordered


METRIC_TAG_PREFIX = "metric."


def _version_metrics(versions: QuerySet[ModelVersion]) -> dict[tuple[int, int, str], dict]:
    """``{(model_id, version, stage): {metric: number}}`` for ``versions`` that recorded metrics.

    From the training run's metrics (lineage), completed by numeric version tags ``metric.<name>``
    (what clients without lineage, and the demo catalog, record); the run wins on a clash.
    """
    from lineage_app.models import TrainingRun
    from models_app.models import VersionTag

    found: dict[tuple[int, int, str], dict] = {}
    tags = VersionTag.objects.filter(version__in=versions, key__startswith=METRIC_TAG_PREFIX).values_list(
        "version__model_id", "version__version", "version__stage", "key", "value"
    )
    for model_id, number, stage, key, value in tags:
        try:
            number_value = float(value)
        except ValueError:
            continue
        found.setdefault((model_id, number, stage), {})[key[len(METRIC_TAG_PREFIX) :]] = number_value
    runs = (
        TrainingRun.objects.filter(version__in=versions)
        .exclude(metrics={})
        .values_list("version__model_id", "version__version", "version__stage", "metrics")
    )
    for model_id, number, stage, metrics in runs:
        if isinstance(metrics, dict) and metrics:
            found.setdefault((model_id, number, stage), {}).update(metrics)
    return found


def headline_metrics(*, models: list[RegisteredModel]) -> dict[int, dict]:
    """``{model_id: {"version", "stage", "name", "value", "metrics"}}`` in two queries.

    The headline comes from the metrics of the production version, else of the newest version
    that recorded any (see :func:`_version_metrics`). Reads the prefetched ``tags`` of ``models``
    (for ``headline_metric``).
    """
    if not models:
        return {}
    found = _version_metrics(ModelVersion.objects.filter(model_id__in=[m.pk for m in models]))
    runs = sorted(
        ((model_id, number, stage, metrics) for (model_id, number, stage), metrics in found.items()),
        key=lambda row: (row[0], -row[1]),
    )
    chosen: dict[int, tuple] = {}
    for model_id, number, stage, metrics in runs:
        if not isinstance(metrics, dict) or not metrics:
            continue
        current = chosen.get(model_id)
        if current is None or (stage == Stage.PRODUCTION and current[1] != Stage.PRODUCTION):
            chosen[model_id] = (number, stage, metrics)
    result = {}
    for model in models:
        if model.pk not in chosen:
            continue
        number, stage, metrics = chosen[model.pk]
        preferred = next((t.value for t in model.tags.all() if t.key == HEADLINE_TAG), "")
        names = _headline_names(metrics, preferred)
        if not names:
            continue
        result[model.pk] = {
            "version": number,
            "stage": stage,
            "name": names[0],
            "value": metrics[names[0]],
            "metrics": {n: metrics[n] for n in names[:4]},
        }
    return result


def metric_series(*, model: RegisteredModel, versions: list[ModelVersion], limit: int = 3) -> list[dict]:
    """Headline metrics across versions, oldest first: ``[{"name", "points": [(version, value)]}]``."""
    runs = {
        number: metrics
        for (_m, number, _s), metrics in _version_metrics(
            ModelVersion.objects.filter(pk__in=[v.pk for v in versions])
        ).items()
    }
    if not runs:
        return []
    merged: dict = {}
    for metrics in runs.values():
        if isinstance(metrics, dict):
            merged.update(metrics)
    preferred = next((t.value for t in model.tags.all() if t.key == HEADLINE_TAG), "")
    series = []
    for name in _headline_names(merged, preferred)[:limit]:
        points = [
            (number, float(runs[number][name]))
            for number in sorted(runs)
            if isinstance(runs[number], dict)
            and isinstance(runs[number].get(name), int | float)
            and not isinstance(runs[number].get(name), bool)
        ]
        if points:
            series.append({"name": name, "points": points})
    return series


_STAGE_RANK = {Stage.PRODUCTION: 3, Stage.STAGING: 2, Stage.NONE: 1, Stage.ARCHIVED: 0}


def model_stages(*, models: list[RegisteredModel]) -> dict[int, str]:
    """The most advanced stage any version of each model has reached (one query)."""
    best: dict[int, str] = {}
    rows = ModelVersion.objects.filter(model_id__in=[m.pk for m in models]).values_list("model_id", "stage")
    for model_id, stage in rows.distinct():
        if _STAGE_RANK.get(stage, -1) > _STAGE_RANK.get(best.get(model_id), -1):
            best[model_id] = stage
    return best


def webhook_list(*, user) -> QuerySet:
    """The caller's webhooks (admins see everyone's), each with its ten latest deliveries."""
    from models_app.models import Webhook, WebhookDelivery

    recent = WebhookDelivery.objects.select_related("event").order_by("-created_at")
    qs = Webhook.objects.select_related("owner").order_by("name", "pk")
    qs = qs.prefetch_related(Prefetch("deliveries", queryset=recent, to_attr="recent_deliveries"))
    if not user.is_authenticated:
        return qs.none()
    return qs if user.is_superuser else qs.filter(owner=user)
