"""The ``docker`` target: an image per deployment generation, run with the Docker SDK.

Works against Docker Engine and against Podman's Docker-compatible socket (``DOCKER_HOST``).
The image is layered so redeploys are fast:

1. ``modelyard-deps:<hash>`` — the base image, a virtualenv and ``pip install`` of the runtime's
   and the model's requirements. Tagged by a hash of those inputs, so a version with the same
   requirements reuses it (no pip at all); built with host networking, the configured index URL
   and CA bundle (corporate proxies);
2. ``modelyard-dep-<id>:g<generation>`` — that plus the runtime source and the model files.

Containers publish port 8080 on ``MODELYARD_DEPLOY_PUBLISH_ADDRESS`` (default 127.0.0.1) at a
port the engine picks, and carry labels naming their deployment.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path

from django.conf import settings

from deployments_app.backends import DeployError, Instance, LaunchSpec, LogFn, TransientDeployError

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
CONTAINER_PORT = 8080
LABEL = "io.modelyard.deployment"

DEPS_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL=""
COPY build-ca.pem /etc/modelyard/build-ca.pem
COPY requirements.txt /etc/modelyard/requirements.txt
RUN python3 -m venv /opt/venv \\
 && if [ -s /etc/modelyard/build-ca.pem ]; then export PIP_CERT=/etc/modelyard/build-ca.pem; fi \\
 && if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \\
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \\
      -r /etc/modelyard/requirements.txt
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
"""

MODEL_DOCKERFILE = """\
ARG DEPS_IMAGE
FROM ${DEPS_IMAGE}
WORKDIR /opt/modelyard
COPY app/ /opt/modelyard/
COPY model/ /model/
LABEL io.modelyard.deployment="{deployment_id}" io.modelyard.generation="{generation}"
EXPOSE 8080
USER 65534
CMD {command}
"""


def _requirements(spec: LaunchSpec) -> str:
    """The runtime's requirements for the model's format, plus the model's own ``requirements.txt``."""
    from deployments_app.runtime.errors import ModelLoadError
    from deployments_app.runtime.formats import detect

    try:
        detected = detect(spec.model_dir)
    except ModelLoadError as exc:
        raise DeployError(str(exc)) from exc
    lines = list(detected.requirements)
    if detected.model_requirements_file is not None:
        lines += detected.model_requirements_file.read_text(errors="replace").splitlines()
    cleaned: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        # pip options in a model's file could point pip elsewhere: the registry's settings decide.
        if line and not line.startswith("-") and line not in cleaned:
            cleaned.append(line)
    return "\n".join(cleaned) + "\n"


def requirements_hash(spec: LaunchSpec) -> str:
    """Cache key of the dependency layer: base image, index URL and the requirements."""
    text = "\n".join(
        [settings.MODELYARD_DEPLOY_BASE_IMAGE, settings.MODELYARD_BUILD_PIP_INDEX_URL, _requirements(spec)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def client():
    """A Docker SDK client for ``DOCKER_HOST``; raises TransientDeployError when unreachable."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise DeployError("The docker target needs the 'docker' package (pip install docker).") from exc
    try:
        engine = docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=900)
        engine.ping()
    except Exception as exc:
        raise TransientDeployError(f"No container engine answers at {settings.DOCKER_HOST}: {exc}") from exc
    return engine


def _stream_build(engine, log: LogFn, **kwargs) -> None:
    """Build with the low-level API so each output line reaches the deployment's build log."""
    for chunk in engine.api.build(decode=True, rm=True, forcerm=True, **kwargs):
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                if line.strip():
                    log(line)
        if "error" in chunk:
            raise DeployError(f"image build failed: {chunk['error'].strip()}")


class DockerBackend:
    """Builds and runs deployment images on a Docker-compatible engine."""

    name = "docker"

    def __init__(self, engine=None) -> None:
        self._engine = engine

    @property
    def engine(self):
        if self._engine is None:
            self._engine = client()
        return self._engine

    def deps_image(self, spec: LaunchSpec, log: LogFn) -> str:
        """Ensure ``modelyard-deps:<hash>`` exists; returns its tag."""
        import docker.errors

        tag = f"modelyard-deps:{requirements_hash(spec)}"
        with contextlib.suppress(docker.errors.ImageNotFound):
            self.engine.images.get(tag)
            log(f"requirements layer {tag} is cached")
            return tag
        context = spec.work_dir / "deps-context"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(DEPS_DOCKERFILE)
        (context / "requirements.txt").write_text(_requirements(spec))
        ca = settings.MODELYARD_BUILD_CA_BUNDLE
        if ca and Path(ca).is_file():
            shutil.copy(ca, context / "build-ca.pem")
        else:
            (context / "build-ca.pem").write_text("")
        buildargs = {"BASE_IMAGE": settings.MODELYARD_DEPLOY_BASE_IMAGE}
        if settings.MODELYARD_BUILD_PIP_INDEX_URL:
            buildargs["PIP_INDEX_URL"] = settings.MODELYARD_BUILD_PIP_INDEX_URL
        log(f"building requirements layer {tag} from {settings.MODELYARD_DEPLOY_BASE_IMAGE}")
        _stream_build(
            self.engine,
            log,
            path=str(context),
            tag=tag,
            buildargs=buildargs,
            network_mode=settings.MODELYARD_BUILD_NETWORK or None,
        )
        shutil.rmtree(context, ignore_errors=True)
        return tag

    def image_tag(self, spec: LaunchSpec) -> str:
        return f"modelyard-dep-{spec.deployment_id}:g{spec.generation}"

    def build(self, spec: LaunchSpec, log: LogFn) -> str:
        import json

        deps = self.deps_image(spec, log)
        context = spec.work_dir / "context"
        shutil.rmtree(context, ignore_errors=True)
        (context / "app" / "deployments_app").mkdir(parents=True)
        (context / "app" / "deployments_app" / "__init__.py").write_text("")
        shutil.copytree(
            RUNTIME_DIR,
            context / "app" / "deployments_app" / "runtime",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        shutil.copytree(spec.model_dir, context / "model")
        command = [
            "python",
            "-m",
            "deployments_app.runtime",
            "--model-dir",
            "/model",
            "--name",
            spec.name,
            "--host",
            "0.0.0.0",  # noqa: S104 - inside the container; published on the configured address
            "--port",
            str(CONTAINER_PORT),
            "--model-version",
            str(spec.version),
        ] + (["--allow-pickle"] if spec.allow_pickle else [])
        (context / "Dockerfile").write_text(
            MODEL_DOCKERFILE.replace("{deployment_id}", str(spec.deployment_id))
            .replace("{generation}", str(spec.generation))
            .replace("{command}", json.dumps(command))
        )
        tag = self.image_tag(spec)
        log(f"building {tag} on {deps}")
        _stream_build(self.engine, log, path=str(context), tag=tag, buildargs={"DEPS_IMAGE": deps})
        shutil.rmtree(context, ignore_errors=True)
        return tag

    def start(self, spec: LaunchSpec, image: str, log: LogFn) -> Instance:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):  # a redelivered task: replace it
            self.engine.containers.get(spec.instance_name).remove(force=True)
        address = settings.MODELYARD_DEPLOY_PUBLISH_ADDRESS
        try:
            container = self.engine.containers.run(
                image,
                name=spec.instance_name,
                detach=True,
                ports={f"{CONTAINER_PORT}/tcp": (address, None)},
                environment=spec.env,
                labels={LABEL: str(spec.deployment_id), "io.modelyard.generation": str(spec.generation)},
            )
        except docker.errors.APIError as exc:
            raise DeployError(f"the container did not start: {exc.explanation or exc}") from exc
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{CONTAINER_PORT}/tcp"
        ) or []
        if not bindings:
            container.remove(force=True)
            raise DeployError("the engine published no host port for the container")
        host_port = bindings[0]["HostPort"]
        log(f"container {container.name} ({container.short_id}) publishes {address}:{host_port}")
        host = f"[{address}]" if ":" in address else address
        return Instance(instance_id=container.id, endpoint_url=f"http://{host}:{host_port}")

    def is_alive(self, instance_id: str) -> bool:
        import docker.errors

        try:
            container = self.engine.containers.get(instance_id)
        except docker.errors.NotFound:
            return False
        return container.status == "running"

    def stop(self, instance_id: str) -> None:
        import docker.errors

        if not instance_id:
            return
        try:
            container = self.engine.containers.get(instance_id)
        except docker.errors.NotFound:
            return
        with contextlib.suppress(docker.errors.APIError):
            container.stop(timeout=5)
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)

    def logs(self, instance_id: str, tail: int = 50) -> list[str]:
        import docker.errors

        try:
            raw = self.engine.containers.get(instance_id).logs(tail=tail)
        except (docker.errors.NotFound, docker.errors.APIError):
            return []
        return raw.decode("utf-8", "replace").splitlines()[-tail:]

    def remove_image(self, tag: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            self.engine.images.remove(tag, force=True)

    def cleanup(self, deployment_id: int, generations: int = 0) -> None:
        """Remove the deployment's containers and images (the shared requirements layer stays).

        Images are removed by their tags (``modelyard-dep-<id>:g<n>``) rather than by a label
        filter: listing images while another build removes its intermediates fails on podman.
        """
        import docker.errors

        for container in self.engine.containers.list(all=True, filters={"label": f"{LABEL}={deployment_id}"}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        for generation in range(1, max(generations, 1) + 1):
            self.remove_image(f"modelyard-dep-{deployment_id}:g{generation}")
        shutil.rmtree(settings.MODELYARD_DEPLOY_DIR / str(deployment_id), ignore_errors=True)
