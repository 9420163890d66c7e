"""Deployments: a model version served as an inference API, and what happened to it."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from deployments_app.choices import TRANSITIONS, DeploymentStatus, DesiredState, Target

DEPLOYMENT_NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
validate_deployment_name = RegexValidator(
    DEPLOYMENT_NAME_RE,
    "Use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit "
    "(it becomes a container, Kubernetes and URL name).",
)


class Deployment(models.Model):
    """One inference API of a model version, and the job record of the worker that runs it.

    ``status`` is what the registry observed; ``desired_state`` is what the user asked for;
    reconcile brings the first to the second. ``generation`` grows with every (re)deploy, so
    container names, image tags and model folders of a rollout never collide with the old ones.
    """

    name = models.CharField(max_length=63, unique=True, validators=[validate_deployment_name])
    model = models.ForeignKey(
        "models_app.RegisteredModel", on_delete=models.PROTECT, related_name="deployments"
    )
    version = models.ForeignKey(
        "models_app.ModelVersion", on_delete=models.PROTECT, related_name="deployments"
    )
    alias = models.CharField(max_length=255, blank=True, help_text="The alias the version was chosen by.")
    follow_alias = models.BooleanField(default=False, help_text="Redeploy when the alias moves.")
    target = models.CharField(max_length=16, choices=Target.choices, default=Target.LOCAL)
    replicas = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    # Environment of the served process, encrypted at rest (values may be secrets): only the
    # keys are ever shown back.
    env_encrypted = models.TextField(blank=True, editable=False)
    env_keys = models.JSONField(default=list, blank=True, editable=False)
    allow_pickle = models.BooleanField(
        default=False, help_text="An admin allowed pickle/joblib files without a passed security_scan."
    )

    status = models.CharField(
        max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED, db_index=True
    )
    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    generation = models.PositiveIntegerField(default=1)
    endpoint_url = models.CharField(max_length=2000, blank=True)
    image = models.CharField(max_length=500, blank=True)
    # Container id (docker), process id (local) or object name (kubernetes) of the live instance.
    instance_id = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True, max_length=20_000)
    restarts = models.PositiveIntegerField(default=0)

    # Work in progress is leased: a worker killed mid-build leaves a lease that expires.
    lease_until = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Predictions the live instance had served at reconcile's last look (its /metrics counter),
    # and the generation that counter belongs to: a new instance counts from zero again.
    predictions_seen = models.PositiveBigIntegerField(default=0)
    predictions_generation = models.PositiveIntegerField(default=0)

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("predict_deployment", "Can send inference requests to a deployment")]
        indexes = [models.Index(fields=["status", "lease_until"])]

    def __str__(self) -> str:
        return self.name

    @property
    def permission_team_id(self) -> int:
        return self.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this deployment."""
        return self.model

    def can_transition_to(self, status: str) -> bool:
        """True when ``status`` may follow the current status."""
        return status == self.status or status in TRANSITIONS.get(self.status, frozenset())

    @property
    def is_serving(self) -> bool:
        """An endpoint answers: running, or still the old one during a rolling redeploy."""
        return bool(self.endpoint_url) and self.desired_state == DesiredState.RUNNING

    @property
    def instance_name(self) -> str:
        """Name of this generation's container / process folder, derived from the id."""
        return f"modelyard-dep-{self.pk}-g{self.generation}"


class DeploymentEvent(models.Model):
    """A status change of a deployment (or a notable step), with a message."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices)
    message = models.TextField(blank=True, max_length=5000)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.deployment}: {self.status}"


class DeploymentLogLine(models.Model):
    """A captured line of a build or of the served process (the UI shows the last ones)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="log_lines")
    generation = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=16, default="build")  # build | runtime | worker
    line = models.TextField(max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.line[:80]
