"""Deployment files, checked offline: Kubernetes manifests against the API schemas, compose for
consistency, and Django's deploy checks with the documented production settings.

No cluster and no compose engine run here; `kubernetes-validate` carries the official schemas.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"


def documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_kubernetes_manifests_validate(name, doc):
    kubernetes_validate.validate(doc, "1.30", strict=True)


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_web_probes_and_roles():
    by_name = {d["metadata"]["name"] + "/" + d["kind"]: d for _, d in documents()}
    web = by_name["modelyard-web/Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert by_name["modelyard-web/Deployment"]["spec"]["replicas"] >= 2
    assert by_name["modelyard-beat/Deployment"]["spec"]["replicas"] == 1
    assert by_name["modelyard-migrate/Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "migrate"
    ]


def test_compose_is_consistent():
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "web", "worker", "beat", "migrate"} <= set(services)
    for name in ("postgres", "redis", "minio", "web"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith(
            "redis://"
        )
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
        for volume in services[name].get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-" + "k" * 40,
    "ALLOWED_HOSTS": "registry.example.com",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "USE_X_FORWARDED_PROTO": "true",
}


def test_check_deploy_passes_with_the_documented_production_settings(tmp_path):
    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "MODELYARD_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "registry_project.settings",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
