"""One FilterSet per model, shared by the REST API and the HTML catalog."""

from __future__ import annotations

import django_filters
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from models_app import search
from models_app.choices import Stage, VersionStatus, Visibility
from models_app.models import ModelUsage, ModelVersion, RegisteredModel

# Tag keys that the catalog shows as their own facets (a model's "task" and "framework").
TASK_TAG, FRAMEWORK_TAG = "task", "framework"
SORTS = [
    ("relevance", "Best match"),
    ("updated", "Recently updated"),
    ("used", "Most used"),
    ("name", "Name"),
]


def _tag_q(value: str, prefix: str) -> Q:
    """``key`` matches any value; ``key=value`` (or ``key:value``) matches exactly."""
    for separator in ("=", ":"):
        if separator in value:
            key, tag_value = value.split(separator, 1)
            return Q(**{f"{prefix}key": key.strip(), f"{prefix}value": tag_value.strip()})
    return Q(**{f"{prefix}key": value.strip()})


def usage_total() -> Coalesce:
    """All recorded uses (downloads and predictions) of the model of the outer query."""
    per_model = (
        ModelUsage.objects.filter(model=OuterRef("pk")).order_by().values("model").annotate(n=Sum("count"))
    )
    return Coalesce(Subquery(per_model.values("n")), 0)


class RegisteredModelFilterSet(django_filters.FilterSet):
    """The catalog's one FilterSet: ``GET /api/v1/models/?q=…`` and the catalog page use it alike."""

    q = django_filters.CharFilter(method="search", label="Search")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    team = django_filters.CharFilter(field_name="team__name", lookup_expr="iexact")
    visibility = django_filters.ChoiceFilter(choices=Visibility.choices)
    created_by = django_filters.CharFilter(field_name="created_by__username", lookup_expr="iexact")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag (key or key=value)")
    task = django_filters.CharFilter(method="filter_task", label="Task")
    framework = django_filters.CharFilter(method="filter_framework", label="Framework")
    stage = django_filters.ChoiceFilter(
        choices=Stage.choices, method="filter_stage", label="Has a version in stage"
    )
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    # Last, so that it orders what every other filter has narrowed (and ranked).
    sort = django_filters.ChoiceFilter(choices=SORTS, method="sort_by", label="Sort by")

    class Meta:
        model = RegisteredModel
        fields = [
            "q",
            "name",
            "team",
            "visibility",
            "created_by",
            "tag",
            "task",
            "framework",
            "stage",
            "updated_since",
            "sort",
        ]

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Ranked full text + typo tolerance (PostgreSQL) or the SQLite fallback: see models_app.search."""
        queryset, self.fuzzy = search.search(queryset, value)
        return queryset

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        from models_app.models import ModelTag

        return queryset.filter(pk__in=ModelTag.objects.filter(_tag_q(value, "")).values("model_id"))

    def filter_task(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return self.filter_tag(queryset, name, f"{TASK_TAG}={value}")

    def filter_framework(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return self.filter_tag(queryset, name, f"{FRAMEWORK_TAG}={value}")

    def filter_stage(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(pk__in=ModelVersion.objects.filter(stage=value).values("model_id"))

    def sort_by(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "relevance" and "search_rank" in queryset.query.annotations:
            return queryset.order_by("-search_rank", "-updated_at", "pk")
        if value == "used":
            return queryset.annotate(usage_total=usage_total()).order_by("-usage_total", "-updated_at", "pk")
        if value == "name":
            return queryset.order_by("name")
        return queryset.order_by("-updated_at", "pk")

    fuzzy = False  # set by search(): True when only typo-tolerant matches were found

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if self.form.cleaned_data.get("q") and not self.form.cleaned_data.get("sort"):
            queryset = self.sort_by(queryset, "sort", "relevance")  # a search ranks best first
        return queryset


class ModelVersionFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)
    created_by = django_filters.CharFilter(field_name="created_by__username", lookup_expr="iexact")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag (key or key=value)")
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = ModelVersion
        fields = ["q", "status", "created_by", "tag", "updated_since"]

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        matching = (
            Q(description__icontains=value) | Q(source__icontains=value) | Q(tags__value__icontains=value)
        )
        return queryset.filter(pk__in=ModelVersion.objects.filter(matching).values("pk"))

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        from models_app.models import VersionTag

        return queryset.filter(pk__in=VersionTag.objects.filter(_tag_q(value, "")).values("version_id"))
