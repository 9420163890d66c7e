"""The ``external`` target: nothing is launched; an outside tool reports status and endpoint."""

from __future__ import annotations

from deployments_app.backends import DeployError, Instance, LaunchSpec, LogFn


class ExternalBackend:
    """Deployments driven by another tool through ``POST /api/v1/deployments/{id}/events``."""

    name = "external"

    def build(self, spec: LaunchSpec, log: LogFn) -> str:
        raise DeployError("External deployments are built and launched by the tool that reports them.")

    def start(self, spec: LaunchSpec, image: str, log: LogFn) -> Instance:
        raise DeployError("External deployments are launched by the tool that reports them.")

    def is_alive(self, instance_id: str) -> bool:
        return True  # the external tool reports failures itself

    def stop(self, instance_id: str) -> None:
        return None  # the external tool stops its own instances and reports "stopped"

    def logs(self, instance_id: str, tail: int = 50) -> list[str]:
        return []

    def cleanup(self, deployment_id: int, generations: int = 0) -> None:
        return None
