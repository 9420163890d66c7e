"""One FilterSet per model, shared by the REST API and the HTML catalog."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from models_app.choices import VersionStatus, Visibility
from models_app.models import ModelVersion, RegisteredModel


def _tag_q(value: str, prefix: str) -> Q:
    """``key`` matches any value; ``key=value`` (or ``key:value``) matches exactly."""
    for separator in ("=", ":"):
        if separator in value:
            key, tag_value = value.split(separator, 1)
            return Q(**{f"{prefix}key": key.strip(), f"{prefix}value": tag_value.strip()})
    return Q(**{f"{prefix}key": value.strip()})


class RegisteredModelFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    team = django_filters.CharFilter(field_name="team__name", lookup_expr="iexact")
    visibility = django_filters.ChoiceFilter(choices=Visibility.choices)
    created_by = django_filters.CharFilter(field_name="created_by__username", lookup_expr="iexact")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag (key or key=value)")
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = RegisteredModel
        fields = ["q", "name", "team", "visibility", "created_by", "tag", "updated_since"]

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        matching = (
            Q(name__icontains=value)
            | Q(description__icontains=value)
            | Q(tags__key__icontains=value)
            | Q(tags__value__icontains=value)
        )
        ids = RegisteredModel.objects.filter(matching).values("pk")
        return queryset.filter(pk__in=ids)

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        from models_app.models import ModelTag

        return queryset.filter(pk__in=ModelTag.objects.filter(_tag_q(value, "")).values("model_id"))


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
