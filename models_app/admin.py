"""Django admin: the governance back office. Writes go through services where rules apply."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from models_app import services, services_events, services_governance
from models_app.choices import TokenScope
from models_app.models import (
    AccessToken,
    AliasHistory,
    AuditEvent,
    Check,
    CheckResult,
    DeliveryAttempt,
    Event,
    ModelAlias,
    ModelTag,
    ModelVersion,
    Promotion,
    PromotionPolicy,
    RegisteredModel,
    TeamMembership,
    VersionTag,
    Webhook,
    WebhookDelivery,
)
from models_app.signin import ThrottledAdminAuthenticationForm
from registry_project.errors import Conflict

# The admin login counts failures like the UI's (models_app.signin).
admin.site.login_form = ThrottledAdminAuthenticationForm


def _save_tags_through_services(request, formset, *, set_tag, delete_tag) -> None:
    """Apply a tag inline's edits with the tag services (permission check, audit, events)."""
    # What the admin's own change message reads from a saved formset.
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.deleted_forms:
        if form.instance.pk:
            delete_tag(actor=request.user, key=form.instance.key)
            formset.deleted_objects.append(form.instance)
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed() or not form.cleaned_data:
            continue
        old_key = form.initial.get("key")
        if form.instance.pk and old_key and old_key != form.cleaned_data["key"]:
            delete_tag(actor=request.user, key=old_key)  # a renamed key: drop the old one
        tag = set_tag(actor=request.user, key=form.cleaned_data["key"], value=form.cleaned_data["value"])
        if form.instance.pk:
            formset.changed_objects.append((tag, form.changed_data))
        else:
            formset.new_objects.append(tag)


class ModelTagInline(admin.TabularInline):
    model = ModelTag
    extra = 0


class VersionTagInline(admin.TabularInline):
    model = VersionTag
    extra = 0


class ModelAliasInline(admin.TabularInline):
    """Shown, not edited: aliases move through the alias API (history, protected aliases)."""

    model = ModelAlias
    extra = 0
    fields = ("alias", "version", "updated_by", "updated_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    """Models are registered, changed and deleted here through the same services as the API."""

    list_display = ("name", "team", "visibility", "last_version_number", "created_by", "updated_at")
    list_filter = ("visibility", "team")
    list_select_related = ("team", "created_by")
    search_fields = ("name", "description", "tags__value")
    readonly_fields = ("created_by", "created_at", "updated_at", "last_version_number")
    inlines = [ModelTagInline, ModelAliasInline]

    def save_model(self, request, obj, form, change):
        if change:
            changes = {f: form.cleaned_data[f] for f in form.changed_data if f in _MODEL_FIELDS}
            if changes:
                services.registered_model_update(actor=request.user, model=obj, **changes)
            return
        created = services.registered_model_create(
            actor=request.user,
            name=obj.name,
            team=obj.team,
            description=obj.description,
            visibility=obj.visibility,
        )
        # The admin goes on with ``obj`` (inlines, redirect): make it the row the service wrote.
        obj.pk, obj.created_by, obj.created_at = created.pk, created.created_by, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db

    def save_formset(self, request, form, formset, change):
        if formset.model is ModelTag:
            model = form.instance
            _save_tags_through_services(
                request,
                formset,
                set_tag=lambda **kw: services.model_tag_set(model=model, **kw),
                delete_tag=lambda **kw: services.model_tag_delete(model=model, **kw),
            )
            return
        super().save_formset(request, form, formset, change)

    def delete_model(self, request, obj):
        services.registered_model_delete(actor=request.user, model=obj)

    def delete_queryset(self, request, queryset):
        for model in queryset:
            services.registered_model_delete(actor=request.user, model=model)


_MODEL_FIELDS = ("name", "description", "team", "visibility")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "stage", "created_by", "created_at", "updated_at")
    list_filter = ("status", "stage", "model__team")
    list_select_related = ("model", "created_by")
    search_fields = ("model__name", "description", "source")
    # Stages move only through promotions (Promotions admin, the API or the UI queue).
    readonly_fields = (
        "model",
        "version",
        "status",
        "stage",
        "manifest_digest",
        "created_by",
        "created_at",
        "updated_at",
    )
    inlines = [VersionTagInline]

    def has_add_permission(self, request):  # versions are numbered by the service, via the API
        return False

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_frozen:
            fields.append("source")
        return fields

    def save_model(self, request, obj, form, change):
        changes = {f: form.cleaned_data[f] for f in form.changed_data if f in ("description", "source")}
        if changes:
            services.model_version_update(actor=request.user, version=obj, **changes)

    def save_formset(self, request, form, formset, change):
        if formset.model is VersionTag:
            version = form.instance
            _save_tags_through_services(
                request,
                formset,
                set_tag=lambda **kw: services.version_tag_set(version=version, **kw),
                delete_tag=lambda **kw: services.version_tag_delete(version=version, **kw),
            )
            return
        super().save_formset(request, form, formset, change)

    def delete_model(self, request, obj):
        services.model_version_delete(actor=request.user, version=obj)

    def delete_queryset(self, request, queryset):
        for version in queryset:
            services.model_version_delete(actor=request.user, version=version)


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    """Roles are set and removed through the team services, so every change is audited."""

    list_display = ("team", "user", "role", "created_at")
    list_filter = ("role", "team")
    search_fields = ("user__username", "team__name")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return ("team", "user") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        saved = services.team_member_set(actor=request.user, team=obj.team, user=obj.user, role=obj.role)
        obj.pk, obj._state.adding, obj._state.db = saved.pk, False, saved._state.db

    def delete_model(self, request, obj):
        services.team_member_remove(actor=request.user, team=obj.team, user=obj.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("team", "user"):
            services.team_member_remove(actor=request.user, team=membership.team, user=membership.user)


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

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:  # creating: the secret is generated by the service and shown once
            return AccessTokenAdminCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_exclude(self, request, obj=None):
        return self.exclude if obj is not None else None

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["user", "name", "scopes", "expires_in_days"]})]
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, raw = services.access_token_create(
            actor=request.user,
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_in_days=form.cleaned_data["expires_in_days"],
        )
        obj.pk, obj.user, obj.name = token.pk, token.user, token.name
        messages.warning(request, f"Token for {token.user}: {raw} — copy it now, it will not be shown again.")

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


# --- Governance -----------------------------------------------------------------------------


class AccessTokenAdminCreateForm(forms.ModelForm):
    """Admins create tokens for any user; the service generates the secret."""

    scopes = forms.MultipleChoiceField(choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(min_value=1, initial=90)

    class Meta:
        model = AccessToken
        fields = ["user", "name"]

    def save(self, commit=True):  # the service saves; admin only logs the addition
        return self.instance

    def save_m2m(self) -> None:
        pass


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written only by services: visible in admin, never edited there."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "production_approvals",
        "staging_approvals",
        "allow_self_approval",
        "on_new_production",
    )
    search_fields = ("model__name",)

    # A model follows MODELYARD_POLICY_DEFAULTS until its policy is first changed: adding one
    # here is that first change (the service stores it), for a model that has none yet.
    def get_readonly_fields(self, request, obj=None):
        return ("model", "updated_at") if obj else ("updated_at",)

    def save_model(self, request, obj, form, change):
        changes = {field: form.cleaned_data[field] for field in form.changed_data if field != "model"}
        model = obj.model if change else form.cleaned_data["model"]
        policy = services_governance.policy_update(actor=request.user, model=model, **changes)
        obj.pk = policy.pk  # the admin's redirect and message name the stored row


class CheckResultInline(admin.TabularInline):
    model = CheckResult
    extra = 0
    can_delete = False
    fields = ("created_at", "status", "summary", "reported_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Check)
class CheckAdmin(ReadOnlyAdmin):
    list_display = ("version", "name", "status", "builtin", "updated_at")
    list_filter = ("status", "builtin", "name")
    list_select_related = ("version__model",)
    search_fields = ("version__model__name", "name", "summary")
    inlines = [CheckResultInline]


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdmin):
    list_display = ("id", "version", "from_stage", "target_stage", "state", "requested_by", "created_at")
    list_filter = ("state", "target_stage")
    list_select_related = ("version__model", "requested_by")
    search_fields = ("version__model__name", "comment")
    actions = ["approve", "reject"]

    @admin.action(description="Approve selected requests")
    def approve(self, request, queryset):
        for promotion in queryset:
            try:
                services_governance.promotion_approve(
                    actor=request.user, promotion=promotion, comment="via admin"
                )
            except (Conflict, PermissionDenied, ValidationError) as exc:
                messages.error(request, f"#{promotion.pk}: {getattr(exc, 'message', exc)}")
            else:
                messages.success(request, f"#{promotion.pk} approved.")

    @admin.action(description="Reject selected requests")
    def reject(self, request, queryset):
        for promotion in queryset:
            try:
                services_governance.promotion_reject(
                    actor=request.user, promotion=promotion, comment="Rejected in admin"
                )
            except (Conflict, PermissionDenied, ValidationError) as exc:
                messages.error(request, f"#{promotion.pk}: {getattr(exc, 'message', exc)}")


@admin.register(AliasHistory)
class AliasHistoryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "model", "alias", "from_version", "to_version", "actor", "reason")
    list_filter = ("alias",)
    search_fields = ("model__name", "alias", "reason")


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "owner", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "url", "owner__username")
    fields = ("name", "url", "events", "active", "owner")
    readonly_fields = ("owner", "url")

    def has_add_permission(self, request):  # created where the secret can be shown once (API)
        return False

    def save_model(self, request, obj, form, change):
        changes = {f: form.cleaned_data[f] for f in form.changed_data if f in ("name", "events", "active")}
        if changes:
            services_events.webhook_update(actor=request.user, hook=Webhook.objects.get(pk=obj.pk), **changes)

    def delete_model(self, request, obj):
        services_events.webhook_delete(actor=request.user, hook=obj)

    def delete_queryset(self, request, queryset):
        for hook in queryset:
            services_events.webhook_delete(actor=request.user, hook=hook)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("attempted_at", "status_code", "duration_ms", "error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("delivery_id", "webhook", "event", "state", "attempts", "last_status_code", "created_at")
    list_filter = ("state",)
    list_select_related = ("webhook", "event")
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Deliver selected again")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            services_events.delivery_redeliver(actor=request.user, delivery=delivery)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "type", "model_name")
    list_filter = ("type",)
    search_fields = ("model_name",)
