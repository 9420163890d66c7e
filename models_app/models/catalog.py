"""The catalog: registered models, their numbered versions, tags and aliases."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F
from django.db.models.functions import Left, Lower, Upper

from models_app.choices import Stage, UsageKind, VersionStatus, Visibility
from models_app.validators import (
    TAG_KEY_MAX,
    TAG_VALUE_MAX,
    validate_alias,
    validate_model_name,
    validate_tag_key,
    validate_tag_value,
)


class RegisteredModel(models.Model):
    """A named model owned by a team; its versions hold the files.

    Names are unique regardless of case, so ``Churn`` and ``churn`` cannot both exist.
    """

    name = models.CharField(max_length=128, validators=[validate_model_name])
    description = models.TextField(blank=True, max_length=20_000)
    # The model card: Markdown for people (what it does, data, metrics, intended use, limits).
    # Rendered sanitized (models_app.cards); raw HTML in it never reaches a page unescaped.
    card = models.TextField(blank=True, max_length=100_000)
    # The full-text document (name A, description B, card C). On PostgreSQL a trigger of
    # migration 0006 fills it on every insert and update, whatever Django writes; elsewhere it
    # stays empty and search falls back (models_app.search).
    search_document = SearchVectorField(null=True, editable=False)
    team = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="registered_models")
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.INTERNAL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # The highest version number ever given out. Numbers are never reused, even after a delete.
    last_version_number = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="registeredmodel_name_ci_unique")]
        indexes = [
            models.Index(fields=["team", "visibility"]),
            # Lookups by name are case-insensitive (``name__iexact``), which PostgreSQL compiles
            # to UPPER(name) = UPPER(%s): the unique LOWER(name) index cannot answer them.
            models.Index(Upper("name"), name="registeredmodel_name_upper"),
            # Listings in name order (the catalog's default, MLflow's searches) walk this index,
            # and the MLflow API's page tokens resume after the last (name, id) seen.
            models.Index(fields=["name", "id"], name="registeredmodel_name_id"),
            # MLflow's case-sensitive ``name LIKE 'churn%'``: a prefix range scan on PostgreSQL,
            # whatever the database's collation (a seq scan otherwise: 2 ms at 10,000 models).
            # Other databases ignore opclasses and get a plain index.
            models.Index(
                fields=["name"], name="registeredmodel_name_pattern", opclasses=["varchar_pattern_ops"]
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def permission_team_id(self) -> int:
        return self.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self


class ModelVersion(models.Model):
    """One numbered version of a model. READY versions are immutable but for description and tags."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField(editable=False)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.PENDING, db_index=True
    )
    status_message = models.TextField(blank=True, max_length=5000)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NONE, db_index=True)
    description = models.TextField(blank=True, max_length=20_000)
    source = models.CharField(max_length=2048, blank=True, help_text="Where the files came from (a URI).")
    # SHA-256 over the sorted (path, sha256, size) lines of the file tree, set at finalize.
    manifest_digest = models.CharField(max_length=64, blank=True, editable=False)
    finalized_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the version-ready hooks (checks, lineage capture) last ran to the end. A READY version
    # without it is owed them: ``version_ready_hooks_sweep`` queues them again if the queueing
    # after finalize was lost (the broker was down).
    ready_hooks_done_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["model_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="modelversion_model_version_unique")
        ]
        indexes = [
            # The catalog's stage facet counts distinct models per stage: an index-only scan.
            models.Index(fields=["stage", "model"], name="modelversion_stage_model"),
            # The sweep's rows only: versions waiting for their hooks (a handful at any time).
            models.Index(
                fields=["finalized_at"],
                condition=models.Q(status=VersionStatus.READY, ready_hooks_done_at__isnull=True),
                name="modelversion_hooks_owed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"

    @property
    def permission_team_id(self) -> int:
        return self.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.model

    @property
    def is_frozen(self) -> bool:
        """A finalized (READY) or failed version accepts no new files or provenance."""
        return self.status != VersionStatus.PENDING


class ModelTag(models.Model):
    """A key/value label on a model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=TAG_KEY_MAX, validators=[validate_tag_key])
    value = models.TextField(max_length=TAG_VALUE_MAX, blank=True, validators=[validate_tag_value])

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["model", "key"], name="modeltag_model_key_unique")]
        indexes = [
            models.Index(fields=["key", "model"]),
            # Tag-value searches (MLflow's ``tags.k = 'v'``) by the first characters of the value:
            # values may be longer than a btree row allows.
            models.Index(F("key"), Left("value", 100), name="modeltag_key_value_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class VersionTag(models.Model):
    """A key/value label on a model version."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=TAG_KEY_MAX, validators=[validate_tag_key])
    value = models.TextField(max_length=TAG_VALUE_MAX, blank=True, validators=[validate_tag_value])

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="versiontag_version_key_unique")
        ]
        indexes = [
            models.Index(fields=["key", "version"]),
            models.Index(F("key"), Left("value", 100), name="versiontag_key_value_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class ModelAlias(models.Model):
    """A movable name (``champion``) pointing at one version of a model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=255, validators=[validate_alias])
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["alias"]
        verbose_name_plural = "model aliases"
        constraints = [
            models.UniqueConstraint(fields=["model", "alias"], name="modelalias_model_alias_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias}"

    @property
    def permission_team_id(self) -> int:
        return self.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.model


class ModelUsage(models.Model):
    """How often a model was used, per kind and day: downloads now, predictions from deployments.

    Written only by ``models_app.services.usage_record`` (an upsert of ``count + n``), read by the
    catalog's "most used" sort.
    """

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="usage")
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["model", "kind", "day"], name="modelusage_model_kind_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.kind} {self.day}: {self.count}"


class ModelRevision(models.Model):
    """A number that changes whenever anything the MLflow API renders for a model changes: the
    model's row, its versions, tags, aliases, their runs' ids, their creators' names.

    PostgreSQL triggers (migration 0013, lineage migration 0003) keep it; nothing else writes
    it. The number is drawn from a sequence when the changing transaction commits (deferred
    constraint triggers), so a reader sees a revision exactly when it sees the changes behind it,
    and no two committed states of a model share one. ``models_app.mlflow.rendered`` keys its
    copies of rendered models by it. Other databases have no triggers and leave the table empty.

    The row is separate from the model's on purpose: writers lock models (``select_for_update``)
    and then their versions or aliases; a bump of the model row at commit would wait for such a
    lock while holding a version's, and deadlock. Nothing locks this row but the bump itself.
    """

    # No foreign key: the bump at commit must not take a key-share lock on the model row.
    model = models.OneToOneField(
        RegisteredModel,
        primary_key=True,
        on_delete=models.DO_NOTHING,  # the model's delete trigger removes the row
        db_constraint=False,
        related_name="+",
    )
    revision = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.model_id}@{self.revision}"
