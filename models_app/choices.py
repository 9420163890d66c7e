"""Enumerations of the catalog."""

from django.db import models


class Visibility(models.TextChoices):
    INTERNAL = "internal", "Internal (every signed-in user may read)"
    PRIVATE = "private", "Private (owning team and admins only)"


class VersionStatus(models.TextChoices):
    PENDING = "PENDING", "Pending (accepting files)"
    READY = "READY", "Ready (finalized, immutable)"
    FAILED = "FAILED", "Failed"


class TeamRole(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    APPROVER = "approver", "Approver"
    DEPLOYER = "deployer", "Deployer"


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"
    # Inference only: sits outside read < write < admin, so a consumer's token can call
    # deployments and nothing else (see models_app.roles.scopes_allow).
    PREDICT = "predict", "Predict"


class UploadState(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Aborted"


class Stage(models.TextChoices):
    NONE = "none", "Experimentation"
    STAGING = "staging", "Staging (testing)"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class CheckStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


class PromotionState(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class Demotion(models.TextChoices):
    ARCHIVE = "archive", "Archive the previous production version"
    NONE = "none", "Move the previous production version back to experimentation"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed for good"


class UsageKind(models.TextChoices):
    DOWNLOAD = "download", "Download"
    PREDICTION = "prediction", "Prediction"
