"""Where deployments run: one backend per target, all driven by ``deployments_app.services``.

A backend does the side effects only (processes, containers, manifests); the services own the
deployment row, its status and its audit trail. Every step is safe to repeat: instance names
derive from the deployment id and generation, so a redelivered task converges on the same
container or process instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LogFn = Callable[[str], None]


class DeployError(Exception):
    """A build or launch failed for a reason worth showing to the user (no retry helps)."""


class TransientDeployError(DeployError):
    """The engine or the artifact store hiccuped: retrying later may succeed."""


@dataclass
class LaunchSpec:
    """What a backend needs to build and start one generation of a deployment."""

    deployment_id: int
    name: str
    generation: int
    model_dir: Path
    work_dir: Path
    allow_pickle: bool
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    model_name: str = ""
    version: int = 0

    @property
    def instance_name(self) -> str:
        return f"modelyard-dep-{self.deployment_id}-g{self.generation}"


@dataclass
class Instance:
    """A started instance: its id (container id, pid, object name) and where it answers."""

    instance_id: str
    endpoint_url: str


class Backend(Protocol):
    name: str

    def build(self, spec: LaunchSpec, log: LogFn) -> str:
        """Prepare what ``start`` runs; returns the image reference (or "" when none)."""

    def start(self, spec: LaunchSpec, image: str, log: LogFn) -> Instance: ...

    def is_alive(self, instance_id: str) -> bool: ...

    def stop(self, instance_id: str) -> None: ...

    def logs(self, instance_id: str, tail: int = 50) -> list[str]: ...

    def cleanup(self, deployment_id: int, generations: int = 0) -> None:
        """Remove what is left of a deleted deployment (images, folders) after its last generation."""


def get_backend(target: str) -> Backend:
    """The backend of ``target`` (``local``, ``docker``, ``kubernetes``, ``external``)."""
    if target == "local":
        from deployments_app.backends.local import LocalBackend

        return LocalBackend()
    if target == "docker":
        from deployments_app.backends.docker import DockerBackend

        return DockerBackend()
    if target == "kubernetes":
        from deployments_app.backends.kubernetes import KubernetesBackend

        return KubernetesBackend()
    if target == "external":
        from deployments_app.backends.external import ExternalBackend

        return ExternalBackend()
    raise DeployError(f"Unknown deployment target {target!r}.")
