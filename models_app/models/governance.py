"""Governance: promotion policies, checks, promotion requests with approvals, alias history."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from models_app.choices import CheckStatus, Demotion, PromotionState, Stage


def _default_required_checks() -> dict:
    return dict(settings.MODELYARD_POLICY_DEFAULTS["required_checks"])


def _default_protected_aliases() -> list:
    return list(settings.MODELYARD_POLICY_DEFAULTS["protected_aliases"])


class PromotionPolicy(models.Model):
    """How versions of one model move up: required checks per stage, approvals, four eyes."""

    model = models.OneToOneField(
        "models_app.RegisteredModel", on_delete=models.CASCADE, related_name="policy"
    )
    # {"staging": ["loadable"], "production": ["loadable", "security_scan"]}
    required_checks = models.JSONField(default=_default_required_checks, blank=True)
    production_approvals = models.PositiveSmallIntegerField(default=1)
    staging_approvals = models.PositiveSmallIntegerField(default=0)
    allow_self_approval = models.BooleanField(default=False, help_text="Off: four eyes.")
    single_production = models.BooleanField(default=True, help_text="At most one production version.")
    on_new_production = models.CharField(max_length=16, choices=Demotion.choices, default=Demotion.ARCHIVE)
    protected_aliases = models.JSONField(default=_default_protected_aliases, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "promotion policies"

    def __str__(self) -> str:
        return f"policy of {self.model}"

    @property
    def permission_team_id(self) -> int:
        return self.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.model

    def approvals_needed(self, stage: str) -> int:
        if stage == Stage.PRODUCTION:
            return self.production_approvals
        if stage == Stage.STAGING:
            return self.staging_approvals
        return 0

    def checks_for(self, stage: str) -> list[str]:
        return list((self.required_checks or {}).get(stage, []))

    @property
    def checks_for_staging(self) -> str:
        return ", ".join(self.checks_for(Stage.STAGING))

    @property
    def checks_for_production(self) -> str:
        return ", ".join(self.checks_for(Stage.PRODUCTION))


class Check(models.Model):
    """The latest result of one named check (integration, data, built-in) on a version."""

    version = models.ForeignKey("models_app.ModelVersion", on_delete=models.CASCADE, related_name="checks")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    summary = models.TextField(blank=True, max_length=5000)
    details_url = models.URLField(blank=True, max_length=2000)
    metrics = models.JSONField(default=dict, blank=True)
    builtin = models.BooleanField(default=False)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="check_version_name_unique")]

    def __str__(self) -> str:
        return f"{self.name}: {self.status}"

    @property
    def permission_team_id(self) -> int:
        return self.version.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.version.model


class CheckResult(models.Model):
    """Every report of a check, kept as history (the Check row holds the latest)."""

    for_check = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="history")
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    summary = models.TextField(blank=True)
    details_url = models.URLField(blank=True, max_length=2000)
    metrics = models.JSONField(default=dict, blank=True)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.for_check.name}: {self.status} at {self.created_at:%Y-%m-%d %H:%M}"


class Promotion(models.Model):
    """A request to move a version to a stage, applied at once or after approvals."""

    version = models.ForeignKey(
        "models_app.ModelVersion", on_delete=models.CASCADE, related_name="promotions"
    )
    from_stage = models.CharField(max_length=16, choices=Stage.choices)
    target_stage = models.CharField(max_length=16, choices=Stage.choices)
    alias = models.CharField(
        max_length=255, blank=True, help_text="Alias to point at the version when applied."
    )
    state = models.CharField(
        max_length=16, choices=PromotionState.choices, default=PromotionState.PENDING, db_index=True
    )
    comment = models.TextField(blank=True, max_length=5000)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="promotions_requested"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_comment = models.TextField(blank=True, max_length=5000)
    override_reason = models.TextField(
        blank=True, max_length=5000, help_text="Admin's reason to promote despite a failed security scan."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_promotion", "Can approve or reject promotion requests")]

    def __str__(self) -> str:
        return f"{self.version} → {self.target_stage} ({self.state})"

    @property
    def permission_team_id(self) -> int:
        return self.version.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.version.model


class PromotionApproval(models.Model):
    """One approver's yes on a pending promotion."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    comment = models.TextField(blank=True, max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["promotion", "approver"], name="promotionapproval_once_per_approver"
            )
        ]

    def __str__(self) -> str:
        return f"approval of #{self.promotion_id} by {self.approver}"


class AliasHistory(models.Model):
    """Every move of an alias: from which version to which, by whom, when and why."""

    model = models.ForeignKey(
        "models_app.RegisteredModel", on_delete=models.CASCADE, related_name="alias_history"
    )
    alias = models.CharField(max_length=255)
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True, max_length=5000)
    promotion = models.ForeignKey(
        Promotion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alias history"

    def __str__(self) -> str:
        return f"{self.alias}: v{self.from_version or '-'} → v{self.to_version or '-'}"
