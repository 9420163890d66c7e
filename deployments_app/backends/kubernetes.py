"""The ``kubernetes`` target: a Deployment + Service, or a KServe ``InferenceService`` (v1beta1).

The manifests are rendered from the deployment record (pure functions, validated offline in the
tests with ``kubernetes-validate``). The image is built like the docker target's and pushed to
``MODELYARD_K8S_IMAGE_REGISTRY``; the manifests are applied with the official ``kubernetes``
client when ``MODELYARD_K8S_KUBECONFIG`` is set. No live cluster was part of the tests.
"""

from __future__ import annotations

from django.conf import settings

from deployments_app.backends import DeployError, Instance, LaunchSpec, LogFn, TransientDeployError

PORT = 8080
LABEL = "modelyard.io/deployment"


def _labels(spec: LaunchSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/managed-by": "modelyard",
        LABEL: str(spec.deployment_id),
    }


def _env(spec: LaunchSpec) -> list[dict]:
    # Values may be secrets: in production, point them at a Secret instead (see docs).
    return [{"name": key, "value": value} for key, value in sorted(spec.env.items())]


def _container(spec: LaunchSpec, image: str) -> dict:
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 5}
    return {
        "name": "runtime",
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False},
    }


def render_deployment_service(spec: LaunchSpec, image: str, namespace: str) -> list[dict]:
    """A ``apps/v1`` Deployment and a ``v1`` Service for one deployment generation."""
    labels = _labels(spec)
    selector = {LABEL: str(spec.deployment_id), "app.kubernetes.io/name": spec.name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "modelyard.io/model": spec.model_name,
                "modelyard.io/version": str(spec.version),
                "modelyard.io/generation": str(spec.generation),
            },
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # Rolling: new pods must be ready before old ones go (the proxy never sees a gap).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {**labels, "modelyard.io/generation": str(spec.generation)}},
                "spec": {"containers": [_container(spec, image)]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def render_inference_service(spec: LaunchSpec, image: str, namespace: str) -> list[dict]:
    """A KServe ``serving.kserve.io/v1beta1`` InferenceService with our runtime as custom predictor."""
    container = _container(spec, image)
    container["name"] = "kserve-container"
    return [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": spec.name,
                "namespace": namespace,
                "labels": _labels(spec),
                "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
            },
            "spec": {
                "predictor": {
                    "minReplicas": spec.replicas,
                    "maxReplicas": max(spec.replicas, 1),
                    "containers": [container],
                }
            },
        }
    ]


def render(spec: LaunchSpec, image: str) -> list[dict]:
    """The manifests of ``MODELYARD_K8S_FLAVOR`` (``deployment`` or ``kserve``)."""
    namespace = settings.MODELYARD_K8S_NAMESPACE
    if settings.MODELYARD_K8S_FLAVOR == "kserve":
        return render_inference_service(spec, image, namespace)
    return render_deployment_service(spec, image, namespace)


def _api_client():
    if not settings.MODELYARD_K8S_KUBECONFIG:
        raise DeployError("The kubernetes target needs MODELYARD_K8S_KUBECONFIG (a kubeconfig file).")
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise DeployError(
            "The kubernetes target needs the 'kubernetes' package (pip install kubernetes)."
        ) from exc
    try:
        return client, config.new_client_from_config(config_file=settings.MODELYARD_K8S_KUBECONFIG)
    except Exception as exc:
        raise TransientDeployError(f"Cannot load the kubeconfig: {exc}") from exc


class KubernetesBackend:
    """Applies rendered manifests with server-side apply semantics (create, else replace)."""

    name = "kubernetes"

    def build(self, spec: LaunchSpec, log: LogFn) -> str:
        from deployments_app.backends.docker import DockerBackend

        registry = settings.MODELYARD_K8S_IMAGE_REGISTRY.rstrip("/")
        if not registry:
            raise DeployError("The kubernetes target needs MODELYARD_K8S_IMAGE_REGISTRY to push images to.")
        _api_client()  # fail before a long build when the cluster is not configured
        docker_backend = DockerBackend()
        local_tag = docker_backend.build(spec, log)
        remote = f"{registry}/modelyard-dep-{spec.deployment_id}:g{spec.generation}"
        image = docker_backend.engine.images.get(local_tag)
        image.tag(remote)
        for line in docker_backend.engine.images.push(remote, stream=True, decode=True):
            if "error" in line:
                raise DeployError(f"push to {registry} failed: {line['error']}")
        log(f"pushed {remote}")
        return remote

    def start(self, spec: LaunchSpec, image: str, log: LogFn) -> Instance:
        from kubernetes.utils import create_from_dict

        client, api = _api_client()
        for manifest in render(spec, image):
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            namespace = manifest["metadata"]["namespace"]
            if kind == "InferenceService":
                custom = client.CustomObjectsApi(api)
                args = ("serving.kserve.io", "v1beta1", namespace, "inferenceservices")
                try:
                    custom.create_namespaced_custom_object(*args, manifest)
                except client.ApiException as exc:
                    if exc.status != 409:
                        raise DeployError(f"applying {kind}/{name} failed: {exc.reason}") from exc
                    custom.patch_namespaced_custom_object(*args, name, manifest)
            else:
                try:
                    create_from_dict(api, manifest, namespace=namespace)
                except Exception as exc:
                    if "AlreadyExists" not in str(exc):
                        raise DeployError(f"applying {kind}/{name} failed: {exc}") from exc
                    if kind == "Deployment":
                        client.AppsV1Api(api).replace_namespaced_deployment(name, namespace, manifest)
            log(f"applied {kind}/{name} in {namespace}")
        namespace = settings.MODELYARD_K8S_NAMESPACE
        url = f"http://{spec.name}.{namespace}.svc.cluster.local"
        if settings.MODELYARD_K8S_FLAVOR == "kserve":
            url = f"http://{spec.name}-predictor.{namespace}.svc.cluster.local"
        return Instance(instance_id=f"{namespace}/{spec.name}", endpoint_url=url)

    def is_alive(self, instance_id: str) -> bool:
        client, api = _api_client()
        namespace, _, name = instance_id.partition("/")
        try:
            status = client.AppsV1Api(api).read_namespaced_deployment_status(name, namespace).status
        except Exception:
            return settings.MODELYARD_K8S_FLAVOR == "kserve"  # KServe heals its own pods
        return bool(status.ready_replicas)

    def stop(self, instance_id: str) -> None:
        client, api = _api_client()
        namespace, _, name = instance_id.partition("/")
        if settings.MODELYARD_K8S_FLAVOR == "kserve":
            try:
                client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
                )
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            return
        for delete in (
            client.AppsV1Api(api).delete_namespaced_deployment,
            client.CoreV1Api(api).delete_namespaced_service,
        ):
            try:
                delete(name, namespace)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise

    def logs(self, instance_id: str, tail: int = 50) -> list[str]:
        return []

    def cleanup(self, deployment_id: int, generations: int = 0) -> None:
        return None
