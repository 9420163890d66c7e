"""Enumerations of deployments."""

from django.db import models


class Target(models.TextChoices):
    LOCAL = "local", "Local process (the registry's own environment)"
    DOCKER = "docker", "Docker / Podman container"
    KUBERNETES = "kubernetes", "Kubernetes (Deployment + Service, or KServe)"
    EXTERNAL = "external", "External tool (reports its own status)"


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    FAILED = "failed", "Failed"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    DELETED = "deleted", "Deleted (stop, then remove)"


# Which status may follow which: a compare-and-set in the services checks the current one.
TRANSITIONS: dict[str, frozenset[str]] = {
    DeploymentStatus.QUEUED: frozenset({"building", "failed", "stopping", "stopped", "starting", "running"}),
    DeploymentStatus.BUILDING: frozenset({"queued", "starting", "failed", "stopping", "running"}),
    DeploymentStatus.STARTING: frozenset({"queued", "running", "failed", "stopping"}),
    DeploymentStatus.RUNNING: frozenset({"queued", "failed", "stopping", "building", "starting"}),
    DeploymentStatus.FAILED: frozenset({"queued", "stopping", "stopped", "building", "starting", "running"}),
    DeploymentStatus.STOPPING: frozenset({"stopped", "failed"}),
    DeploymentStatus.STOPPED: frozenset({"queued", "building", "starting", "running"}),
}
# A build or start in progress holds a lease; past it, reconcile takes the work over.
IN_PROGRESS = (DeploymentStatus.QUEUED, DeploymentStatus.BUILDING, DeploymentStatus.STARTING)
