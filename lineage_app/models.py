"""Provenance of model versions: data, code, environment and pipeline, indexed for questions.

Rows are shared where the world shares them (one Dataset per URI, one Environment per package
set, one CodeRevision per commit state) so that "which versions used X" is an indexed lookup.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from lineage_app.choices import DatasetRole, ParentRelation


class Dataset(models.Model):
    """A named data source (a table, a bucket prefix, a file)."""

    name = models.CharField(max_length=255, db_index=True)
    uri = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["name", "uri"], name="dataset_name_uri_unique")]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """One exact state of a dataset, by content digest or the store's version id/ETag."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    digest = models.CharField(max_length=200)
    size = models.BigIntegerField(null=True, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    schema = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "digest"], name="datasetversion_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name}@{self.digest[:19]}"


class CodeRevision(models.Model):
    """The code state a run was trained from, with its recent ancestry for exact containment."""

    repo_url = models.CharField(max_length=2000, blank=True)
    commit = models.CharField(max_length=64, db_index=True)
    branch = models.CharField(max_length=255, blank=True)
    dirty = models.BooleanField(default=False)
    diff_digest = models.CharField(max_length=200, blank=True)
    entrypoint = models.CharField(max_length=1000, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    # How many ancestors the client sent; fewer than the cap means the history is complete.
    ancestor_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.repo_url or 'repo'}@{self.commit[:12]}{' (dirty)' if self.dirty else ''}"


class CommitAncestor(models.Model):
    """One ancestor commit of a revision (up to 1,000), indexed by SHA."""

    revision = models.ForeignKey(CodeRevision, on_delete=models.CASCADE, related_name="ancestors")
    sha = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["revision", "sha"], name="commitancestor_unique")]

    def __str__(self) -> str:
        return self.sha


class Environment(models.Model):
    """A software environment, shared by every run with the same Python, platform and packages."""

    digest = models.CharField(max_length=64, unique=True)
    python = models.CharField(max_length=50, blank=True)
    platform = models.CharField(max_length=100, blank=True)
    accelerator = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"python {self.python or '?'} on {self.platform or '?'} ({self.digest[:12]})"


class EnvironmentPackage(models.Model):
    """One installed package of an environment; ``name`` is normalized per PEP 503."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="packages")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="envpackage_unique")]
        indexes = [models.Index(fields=["name", "version"], name="envpackage_name_version")]

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


class TrainingRun(models.Model):
    """The run that produced a model version, with what went into it."""

    version = models.OneToOneField(
        "models_app.ModelVersion", on_delete=models.CASCADE, related_name="training_run"
    )
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    pipeline = models.CharField(max_length=255, blank=True)
    step = models.CharField(max_length=255, blank=True)
    user = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Keys of the document we do not model.")
    code = models.ForeignKey(
        CodeRevision, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"run {self.external_id or self.pk} of {self.version}"

    @property
    def permission_team_id(self) -> int:
        return self.version.model.team_id

    @property
    def permission_model(self):
        return self.version.model


class RunDataset(models.Model):
    """A dataset version a run used, and for what."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="datasets")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="runs")
    role = models.CharField(max_length=20, choices=DatasetRole.choices, default=DatasetRole.TRAIN)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "dataset_version", "role"], name="rundataset_unique")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.dataset_version}"


class VersionParent(models.Model):
    """A version made from another (fine-tuned, distilled, quantized from)."""

    child = models.ForeignKey(
        "models_app.ModelVersion", on_delete=models.CASCADE, related_name="parent_links"
    )
    parent = models.ForeignKey(
        "models_app.ModelVersion", on_delete=models.CASCADE, related_name="child_links"
    )
    relation = models.CharField(max_length=30, choices=ParentRelation.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["child", "parent"], name="versionparent_unique")]

    def __str__(self) -> str:
        return f"{self.child} {self.relation} {self.parent}"


class LineageAmendment(models.Model):
    """A correction to a frozen version's provenance: appended and audited, never a silent edit."""

    version = models.ForeignKey(
        "models_app.ModelVersion", on_delete=models.CASCADE, related_name="lineage_amendments"
    )
    reason = models.TextField(max_length=5000)
    changes = models.JSONField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"amendment of {self.version} at {self.created_at:%Y-%m-%d}"


class Advisory(models.Model):
    """A vulnerability advisory imported from OSV JSON (osv.dev, pip-audit)."""

    osv_id = models.CharField(max_length=100, unique=True)
    summary = models.TextField(blank=True)
    aliases = models.JSONField(default=list, blank=True)
    severity = models.CharField(max_length=100, blank=True)
    published = models.DateTimeField(null=True, blank=True)
    modified = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField()
    imported_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-modified", "osv_id"]
        verbose_name_plural = "advisories"

    def __str__(self) -> str:
        return self.osv_id


class AdvisoryPackage(models.Model):
    """One affected PyPI package of an advisory, with its affected ranges and explicit versions."""

    advisory = models.ForeignKey(Advisory, on_delete=models.CASCADE, related_name="packages")
    name = models.CharField(max_length=200, db_index=True)
    # [{"introduced": "0", "fixed": "2.11.1"}, {"introduced": "2.12.0", "last_affected": "2.12.3"}]
    ranges = models.JSONField(default=list, blank=True)
    versions = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.advisory.osv_id}: {self.name}"


# --- MLflow tracking objects (served by the MLflow-compatible API, models_app/mlflow) -----------


class MlflowExperiment(models.Model):
    """An MLflow experiment: a folder of runs and logged models.

    Experiment ``0`` ("Default", created by the migration) has no team and takes everyone's
    runs; runs and logged models carry their own team and creator, which decide who sees them.
    """

    name = models.CharField(max_length=500, unique=True)
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifecycle_stage = models.CharField(max_length=16, default="active")
    tags = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"experiment {self.pk} ({self.name})"


class MlflowRun(models.Model):
    """An MLflow run: params, tags, latest metrics and the models it output.

    Registering a version from one of its logged models copies these into the version's
    ``TrainingRun`` (with the ``mlflow.source.git.*`` tags as its ``CodeRevision``).
    """

    run_id = models.CharField(max_length=32, unique=True)
    experiment = models.ForeignKey(MlflowExperiment, on_delete=models.PROTECT, related_name="runs")
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=250, blank=True)
    status = models.CharField(max_length=16, default="RUNNING")
    start_time = models.BigIntegerField(null=True, blank=True, help_text="Milliseconds since the epoch.")
    end_time = models.BigIntegerField(null=True, blank=True)
    lifecycle_stage = models.CharField(max_length=16, default="active")
    params = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    # {key: {"value": v, "timestamp": ms, "step": n}}: the latest value of each metric.
    latest_metrics = models.JSONField(default=dict, blank=True)
    # [{"model_id": "m-…", "step": 0}]
    outputs = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.run_id}"

    @property
    def artifact_root(self) -> str:
        return f"{self.experiment_id}/{self.run_id}/artifacts"


class MlflowMetric(models.Model):
    """One logged value of a run's metric (the history ``metrics/get-history`` returns)."""

    run = models.ForeignKey(MlflowRun, on_delete=models.CASCADE, related_name="metric_history")
    key = models.CharField(max_length=250)
    value = models.FloatField()
    timestamp = models.BigIntegerField()
    step = models.BigIntegerField(default=0)
    model_id = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["timestamp", "step", "id"]
        indexes = [models.Index(fields=["run", "key", "timestamp"], name="mlflowmetric_run_key")]

    def __str__(self) -> str:
        return f"{self.key}={self.value} @ {self.step}"


class MlflowLoggedModel(models.Model):
    """An MLflow 3 logged model: a directory of artifacts that a model version can be made from."""

    model_id = models.CharField(max_length=40, unique=True)
    experiment = models.ForeignKey(MlflowExperiment, on_delete=models.PROTECT, related_name="logged_models")
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=500, db_index=True)
    model_type = models.CharField(max_length=200, blank=True)
    source_run = models.ForeignKey(
        MlflowRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="logged_models"
    )
    status = models.CharField(max_length=32, default="LOGGED_MODEL_PENDING")
    status_message = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.model_id

    @property
    def artifact_root(self) -> str:
        return f"{self.experiment_id}/models/{self.model_id}/artifacts"


class MlflowArtifact(models.Model):
    """A file PUT through the ``mlflow-artifacts`` proxy, stored once as a content-addressed blob.

    ``path`` is the full proxy path (``0/models/m-…/artifacts/MLmodel``). A model version made
    from these files points at the same blobs: nothing is copied.
    """

    path = models.CharField(max_length=1024, unique=True)
    run = models.ForeignKey(
        MlflowRun, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts"
    )
    logged_model = models.ForeignKey(
        MlflowLoggedModel, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts"
    )
    blob = models.ForeignKey("models_app.Blob", on_delete=models.PROTECT, related_name="mlflow_artifacts")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path
