"""The production image builds from a local base image and serves /readyz and the API.

Built and run for real through podman's Docker-compatible socket with the Docker SDK (as CI
does after `.ci/podman-setup.sh`). Skipped without a socket, failed under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parents[2]
SOCKET = os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock")
BASE_IMAGE = os.environ.get("MODELYARD_BASE_IMAGE", "localhost/python-base:bookworm")
CA_BUNDLE = os.environ.get("MODELYARD_BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def docker_client():
    import docker

    try:
        client = docker.DockerClient(base_url=SOCKET, timeout=900)
        client.ping()
        client.images.get(BASE_IMAGE)
    except Exception as exc:  # no socket, no engine, or no base image
        need_service(
            False,
            f"a container engine at {SOCKET} with {BASE_IMAGE} ({type(exc).__name__}); "
            "run .ci/podman-setup.sh",
        )
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(docker_client, tmp_path_factory):
    context = tmp_path_factory.mktemp("context")
    shutil.copytree(
        ROOT,
        context,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "test-output", "__pycache__", "*.egg-info", "client"
        ),
    )
    if os.path.exists(CA_BUNDLE):
        shutil.copy(CA_BUNDLE, context / "docker" / "build-ca.pem")
    buildargs = {
        "BASE_IMAGE": BASE_IMAGE,
        "CA_BUNDLE": "docker/build-ca.pem" if os.path.exists(CA_BUNDLE) else "docker/no-extra-ca.pem",
    }
    if os.environ.get("MODELYARD_BUILD_PIP_INDEX_URL"):
        buildargs["PIP_INDEX_URL"] = os.environ["MODELYARD_BUILD_PIP_INDEX_URL"]
    tag = "localhost/modelyard:ci-smoke"
    docker_client.images.build(
        path=str(context),
        dockerfile="docker/Dockerfile",
        tag=tag,
        buildargs=buildargs,
        network_mode="host",
        rm=True,
    )
    return tag


def test_image_serves_readyz_and_the_api(docker_client, image):
    container = docker_client.containers.run(
        image,
        command=["web"],
        detach=True,
        ports={"8000/tcp": ("127.0.0.1", None)},
        environment={
            "ALLOWED_HOSTS": "*",
            "SECRET_KEY": "ci-smoke-not-secret-" + "x" * 30,
            "MODELYARD_MIGRATE_ON_START": "true",
        },
    )
    try:
        container.reload()
        port = container.ports["8000/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                ready = requests.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still starting up
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(1)
        assert ready.json()["status"] == "ready"
        assert container.exec_run(["python", "manage.py", "ensure_admin"]).exit_code == 0
        result = container.exec_run(
            ["python", "manage.py", "create_token", "admin", "--scopes", "read,write"]
        )
        assert result.exit_code == 0
        token = result.output.decode().strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        created = requests.post(f"{base}/api/v1/teams/", json={"name": "smoke"}, headers=headers, timeout=10)
        assert created.status_code == 201, created.text
        listing = requests.get(f"{base}/api/v1/models/", headers=headers, timeout=10)
        assert listing.status_code == 200 and listing.json()["count"] == 0
        assert requests.get(f"{base}/api/v1/models/", timeout=10).status_code == 401
        assert container.exec_run(["id", "-u"]).output.decode().strip() != "0"  # not root
    finally:
        container.remove(force=True)
