"""Lineage in the admin: read-only records (provenance changes only through the API's services)."""

from __future__ import annotations

from django.contrib import admin

from lineage_app.models import (
    Advisory,
    AdvisoryPackage,
    CodeRevision,
    Dataset,
    DatasetVersion,
    Environment,
    EnvironmentPackage,
    LineageAmendment,
    RunDataset,
    TrainingRun,
    VersionParent,
)
from models_app.admin import ReadOnlyAdmin


class RunDatasetInline(admin.TabularInline):
    model = RunDataset
    extra = 0
    can_delete = False
    readonly_fields = ("dataset_version", "role")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ("version", "external_id", "pipeline", "started_at", "code", "environment")
    list_select_related = ("version__model", "code", "environment")
    search_fields = ("version__model__name", "external_id", "pipeline")
    inlines = [RunDatasetInline]


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("name", "uri", "created_at")
    search_fields = ("name", "uri")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ("dataset", "digest", "rows", "size", "created_at")
    search_fields = ("dataset__name", "digest")


@admin.register(CodeRevision)
class CodeRevisionAdmin(ReadOnlyAdmin):
    list_display = ("repo_url", "commit", "branch", "dirty", "committed_at", "ancestor_count")
    search_fields = ("repo_url", "commit", "branch")


class EnvironmentPackageInline(admin.TabularInline):
    model = EnvironmentPackage
    extra = 0
    can_delete = False
    readonly_fields = ("name", "version")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Environment)
class EnvironmentAdmin(ReadOnlyAdmin):
    list_display = ("digest", "python", "platform", "accelerator", "created_at")
    search_fields = ("digest", "packages__name")
    inlines = [EnvironmentPackageInline]


@admin.register(VersionParent)
class VersionParentAdmin(ReadOnlyAdmin):
    list_display = ("child", "relation", "parent")
    list_select_related = ("child__model", "parent__model")


@admin.register(LineageAmendment)
class LineageAmendmentAdmin(ReadOnlyAdmin):
    list_display = ("version", "reason", "actor", "created_at")
    list_select_related = ("version__model", "actor")


class AdvisoryPackageInline(admin.TabularInline):
    model = AdvisoryPackage
    extra = 0
    can_delete = False
    readonly_fields = ("name", "ranges", "versions")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Advisory)
class AdvisoryAdmin(ReadOnlyAdmin):
    list_display = ("osv_id", "summary", "modified", "imported_at")
    search_fields = ("osv_id", "summary", "packages__name")
    inlines = [AdvisoryPackageInline]
