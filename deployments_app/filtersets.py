"""One FilterSet per model, shared by the API and the HTML list."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from deployments_app.choices import DeploymentStatus, Target
from deployments_app.models import Deployment


class DeploymentFilterSet(django_filters.FilterSet):
    """``?model=churn&status=running&target=docker&q=…``."""

    q = django_filters.CharFilter(method="search", label="Search")
    model = django_filters.CharFilter(field_name="model__name", lookup_expr="iexact")
    status = django_filters.MultipleChoiceFilter(choices=DeploymentStatus.choices)
    target = django_filters.ChoiceFilter(choices=Target.choices)

    class Meta:
        model = Deployment
        fields = ["q", "model", "status", "target"]

    def search(self, queryset, name, value):
        if not value.strip():
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(model__name__icontains=value))
