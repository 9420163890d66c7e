"""Kubernetes manifests rendered from a deployment record, validated offline.

``kubernetes-validate`` carries the official API schemas, so the Deployment and Service are
checked strictly; KServe's InferenceService is a CRD without a bundled schema, so its required
structure is asserted here. No cluster was used: applying needs MODELYARD_K8S_KUBECONFIG, which the
tests check is required (the Kubernetes API server is the one thing that cannot run here).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from deployments_app.backends import DeployError, LaunchSpec
from deployments_app.backends.kubernetes import KubernetesBackend, render, render_deployment_service


def spec(**extra) -> LaunchSpec:
    values = dict(
        deployment_id=7, name="churn-api", generation=3, model_dir=Path("/nonexistent"),
        work_dir=Path("/tmp"), allow_pickle=False, env={"GREETING": "hi"}, replicas=2,
        model_name="churn", version=4,
    )  # fmt: skip
    values.update(extra)
    return LaunchSpec(**values)


@pytest.mark.parametrize("version", ["1.29", "1.30"])
def test_deployment_and_service_validate(version):
    for manifest in render_deployment_service(spec(), "registry.example.com/modelyard-dep-7:g3", "ml"):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_deployment_rolls_without_gaps_and_probes_the_runtime():
    deployment, service = render_deployment_service(spec(), "img:1", "ml")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert {"name": "GREETING", "value": "hi"} in container["env"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["metadata"]["annotations"]["modelyard.io/version"] == "4"


def test_a_bad_manifest_would_be_caught():
    """The validator is strict: the check above can fail."""
    deployment, _ = render_deployment_service(spec(), "img:1", "ml")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30", strict=True)


def test_kserve_inference_service(settings):
    settings.MODELYARD_K8S_FLAVOR = "kserve"
    (isvc,) = render(spec(), "img:1")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 2
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == "img:1"
    assert container["ports"][0]["containerPort"] == 8080
    # The predictor's container is a core/v1 Container: validate it as one, inside a Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, "1.30", strict=True)


def test_applying_needs_a_kubeconfig(settings):
    settings.MODELYARD_K8S_KUBECONFIG = ""
    settings.MODELYARD_K8S_IMAGE_REGISTRY = "registry.example.com"
    with pytest.raises(DeployError, match="MODELYARD_K8S_KUBECONFIG"):
        KubernetesBackend().build(spec(), print)
    settings.MODELYARD_K8S_IMAGE_REGISTRY = ""
    with pytest.raises(DeployError, match="MODELYARD_K8S_IMAGE_REGISTRY"):
        KubernetesBackend().build(spec(), print)
