"""Admin for deployments: read-only state, actions that call the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from deployments_app import services
from deployments_app.models import Deployment, DeploymentEvent
from registry_project.errors import Conflict


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "status", "message", "actor")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "model",
        "version",
        "target",
        "status",
        "desired_state",
        "requested_by",
        "updated_at",
    )
    list_filter = ("status", "target", "desired_state")
    search_fields = ("name", "model__name")
    list_select_related = ("model", "version", "requested_by")
    readonly_fields = (
        "name",
        "model",
        "version",
        "alias",
        "target",
        "replicas",
        "env_keys",
        "allow_pickle",
        "status",
        "desired_state",
        "generation",
        "endpoint_url",
        "image",
        "instance_id",
        "error",
        "restarts",
        "lease_until",
        "heartbeat_at",
        "attempts",
        "requested_by",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
    fields = ("follow_alias", *readonly_fields)
    inlines = [DeploymentEventInline]
    actions = ["stop", "start", "redeploy"]

    def has_add_permission(self, request) -> bool:
        return False  # deployments are requested through the API or by a deployer

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # state changes go through the actions below (services, audited)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a live deployment must be stopped by a worker: use the API's DELETE

    def _each(self, request, queryset, service, verb: str) -> None:
        done = 0
        for deployment in queryset:
            try:
                service(actor=request.user, deployment=deployment)
                done += 1
            except (Conflict, ValidationError, PermissionDenied) as exc:
                text = exc.message if isinstance(exc, Conflict) else str(exc)
                self.message_user(request, f"{deployment.name}: {text}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} requested for {done} deployment(s).", messages.SUCCESS)

    @admin.action(description="Stop selected deployments")
    def stop(self, request, queryset):
        self._each(request, queryset, services.deployment_stop, "Stop")

    @admin.action(description="Start selected (stopped or failed) deployments")
    def start(self, request, queryset):
        self._each(request, queryset, services.deployment_start, "Start")

    @admin.action(description="Redeploy selected deployments (same version or alias)")
    def redeploy(self, request, queryset):
        self._each(request, queryset, services.deployment_redeploy, "Redeploy")
