"""Django admin: the governance back office. Writes go through services where rules apply."""

from __future__ import annotations

from django.contrib import admin, messages

from models_app import services
from models_app.models import (
    AccessToken,
    AuditEvent,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    TeamMembership,
    VersionTag,
)


class ModelTagInline(admin.TabularInline):
    model = ModelTag
    extra = 0


class VersionTagInline(admin.TabularInline):
    model = VersionTag
    extra = 0


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0
    fields = ("alias", "version", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")
    raw_id_fields = ("version",)


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "visibility", "last_version_number", "created_by", "updated_at")
    list_filter = ("visibility", "team")
    list_select_related = ("team", "created_by")
    search_fields = ("name", "description", "tags__value")
    readonly_fields = ("created_by", "created_at", "updated_at", "last_version_number")
    inlines = [ModelTagInline, ModelAliasInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "created_by", "created_at", "updated_at")
    list_filter = ("status", "model__team")
    list_select_related = ("model", "created_by")
    search_fields = ("model__name", "description", "source")
    readonly_fields = ("model", "version", "status", "created_by", "created_at", "updated_at")
    inlines = [VersionTagInline]

    def has_add_permission(self, request):  # versions are numbered by the service, via the API
        return False

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_frozen:
            fields.append("source")
        return fields


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    list_display = ("team", "user", "role", "created_at")
    list_filter = ("role", "team")
    search_fields = ("user__username", "team__name")
    raw_id_fields = ("user",)


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "scopes", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "scopes",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    exclude = ("digest",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        # Tokens are created where their secret can be shown once: the UI, the API or
        # ``manage.py create_token``.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            services.access_token_revoke(actor=request.user, token=token)
        messages.success(request, f"Revoked {queryset.count()} token(s).")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_username", "action", "object_repr", "model_name", "client_ip")
    list_filter = ("action",)
    search_fields = ("actor_username", "object_repr", "model_name", "request_id")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
