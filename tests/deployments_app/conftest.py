"""Fixtures of the deployment tests: deployer personas, READY versions of real models, runtimes.

Models are real (scikit-learn via skops, ONNX via skl2onnx, pickles), stored through the
artifact services like any upload, so deployments materialize them from the artifact store.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connection

from models_app import services
from models_app.choices import TeamRole
from models_app.models import ModelVersion
from tests.conftest import make_user, need_service

ROOT = Path(__file__).resolve().parents[2]
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [0.5, 0.2], [2.5, 0.9]])
Y = [0, 0, 1, 1, 0, 1]
BASE_IMAGE = os.environ.get("MODELYARD_DEPLOY_BASE_IMAGE", "localhost/python-base:bookworm")
SOCKET = os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock")
CA_BUNDLE = os.environ.get("MODELYARD_BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


class Exploit:
    """Unpickling this runs a shell command: security_scan must flag it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/modelyard-deploy-pwned",))


def sklearn_model(flip: bool = False):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, [1 - y for y in Y] if flip else Y)


def skops_files(flip: bool = False) -> dict[str, bytes]:
    import skops.io as sio

    example = json.dumps({"columns": ["a", "b"], "data": [[0.5, 1.0]]}).encode()
    return {"model.skops": sio.dumps(sklearn_model(flip)), "input_example.json": example}


def onnx_files() -> dict[str, bytes]:
    from skl2onnx import to_onnx

    onx = to_onnx(sklearn_model(), X[:1].astype(np.float32), target_opset=17)
    return {"model.onnx": onx.SerializeToString()}


def malicious_pickle_files() -> dict[str, bytes]:
    return {"model.pkl": pickle.dumps(Exploit(), protocol=4)}


def ready_version(owner, model, files: dict[str, bytes], *, run_checks: bool = False) -> ModelVersion:
    """Upload ``files`` as a new version and finalize it (running the built-in checks if asked)."""
    version = services.model_version_create(actor=owner, model=model)
    for path, data in files.items():
        services.version_file_upload(
            actor=owner, version=version, path=path, stream=io.BytesIO(data), size=len(data)
        )
    services.model_version_finalize(actor=owner, version=version)
    if run_checks:
        from models_app.services_governance import builtin_checks_run

        builtin_checks_run(version_id=version.pk)
    version.refresh_from_db()
    return version


@pytest.fixture
def outsider_deployer(other_team):
    """Deploys for another team: allowed to deploy in general, never on ``risk``'s models."""
    return make_user("outsider-deployer", team=other_team, role=TeamRole.DEPLOYER)


@pytest.fixture
def skops_version(owner, internal_model):
    return ready_version(owner, internal_model, skops_files())


@pytest.fixture
def private_skops_version(owner, private_model):
    return ready_version(owner, private_model, skops_files())


def start_runtime(model_dir: Path, name: str) -> tuple[subprocess.Popen, str]:
    """A real serving runtime on 127.0.0.1 (a free port), for proxy tests of external deployments."""
    port_file = Path(tempfile.mkdtemp(prefix="modelyard-rt-")) / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments_app.runtime", "--model-dir", str(model_dir), "--name", name,
         "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)],
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip().isdigit():
            return proc, f"http://127.0.0.1:{int(port_file.read_text())}"
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}")
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("runtime did not start")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def external_runtime(tmp_path_factory):
    """A runtime serving a skops model as deployment name ``ext``: what an external tool runs."""
    model_dir = tmp_path_factory.mktemp("ext-model")
    for path, data in skops_files().items():
        (model_dir / path).write_bytes(data)
    proc, url = start_runtime(model_dir, "ext")
    yield url
    stop_process(proc)


# --- A real Celery worker (+ beat) on the test database, shared by the end-to-end tests ------
# (tests/deployments_app and tests/client use it; skipped without Redis, failed under REQUIRE_SERVICES=1)


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def _broker_available() -> bool:
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker + beat on the test database; killed (and its leftovers) at the end."""
    need_service(_broker_available(), "Redis as CELERY_BROKER_URL (redis://…)")
    from registry_project.celery import app

    app.control.purge()  # messages left by earlier runs must not reach this worker
    # Worker and tests share one artifact folder, pinned here: a test elsewhere in the session may
    # have left its own store in the settings (overrides restored out of order).
    from django.test import override_settings

    from models_app import artifacts

    root = Path(settings.VAR_DIR) / "artifacts"
    storages = dict(settings.STORAGES)
    storages["artifacts"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(root)},
    }
    pinned = override_settings(STORAGES=storages, ARTIFACT_STORAGE_PATH=root, S3_BUCKET="")
    pinned.enable()
    artifacts.get_store.cache_clear()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "registry_project.settings",
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "MODELYARD_VAR_DIR": str(settings.VAR_DIR),
            "ARTIFACT_STORAGE_PATH": str(root),
            "S3_BUCKET": "",
            "MODELYARD_DEPLOY_DIR": str(settings.MODELYARD_DEPLOY_DIR),
            "MODELYARD_DEPLOY_RECONCILE_SECONDS": "3",
            "MODELYARD_DEPLOY_LEASE_SECONDS": "30",
            "MODELYARD_DEPLOY_DRAIN_SECONDS": "1",
            "MODELYARD_DEPLOY_BASE_IMAGE": BASE_IMAGE,
            "MODELYARD_BUILD_CA_BUNDLE": CA_BUNDLE,
            "DOCKER_HOST": SOCKET,
            "DB_CONN_MAX_AGE": "0",
        }
    )
    log_path = os.environ.get("WORKER_LOG") or tmp_path_factory.mktemp("worker") / "worker.log"
    log = open(log_path, "wb")  # noqa: SIM115
    schedule = tmp_path_factory.mktemp("beat") / "schedule"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "registry_project", "worker", "-Q", "deployments,celery",
         "-B", "-s", str(schedule), "--concurrency", "3", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not app.control.ping(timeout=1):  # ready to consume: timings start from a warm worker
        if proc.poll() is not None or time.monotonic() > deadline:
            log.flush()
            pytest.fail("the Celery worker did not start:\n" + Path(log.name).read_text()[-3000:])
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    _kill_local_leftovers()
    log.close()
    pinned.disable()
    artifacts.get_store.cache_clear()


def _kill_local_leftovers() -> None:
    for pid_file in Path(settings.MODELYARD_DEPLOY_DIR).glob("*/g*/runtime.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
