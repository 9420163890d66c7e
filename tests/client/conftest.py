"""A live registry for the client: pytest-django's ``live_server`` on real artifact storage.

The CLI runs as a real subprocess (``python -m modelyard``) against it; the Python API runs
in-process. ``request_log`` records every request the live server receives (method, path,
body length, Range), read from the WSGI environ through Django's ``request_started`` signal,
so tests can prove server-side which bytes were sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.signals import request_started
from django.test import override_settings

from models_app import artifacts, services
from tests.conftest import s3_settings

_CLEARED_ENV = (
    "MODELYARD_",
    "GITHUB_",
    "GITLAB_",
    "CI_",
    "AIRFLOW_CTX_",
    "KFP_",
    "ARGO_",
    "AWS_",
    "CUDA_VISIBLE_DEVICES",
)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_ENV)}
    env.update(
        MODELYARD_STATE_DIR=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        AWS_EC2_METADATA_DISABLED="true",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Registry:
    url: str
    token: str
    tmp_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.tmp_path, **{"MODELYARD_URL": self.url, "MODELYARD_TOKEN": self.token, **extra})

    def command(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "modelyard", *map(str, args)]

    def cli(self, *args: object, cwd: Path | None = None, env: dict | None = None, stdin: str | None = None):
        return subprocess.run(
            self.command(*args),
            cwd=cwd or self.tmp_path,
            env=env or self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=240,
        )

    def client(self, **kwargs):
        import modelyard

        return modelyard.Client(url=self.url, token=self.token, **kwargs)


@pytest.fixture
def registry(live_server, transactional_db, owner, tmp_path, monkeypatch) -> Registry:
    """The live server with a read/write token of ``owner`` (contributor of team ``risk``)."""
    _token, raw = services.access_token_create(actor=owner, user=owner, name="cli", scopes=["read", "write"])
    for key in list(os.environ):
        if key.startswith(_CLEARED_ENV):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return Registry(url=live_server.url, token=raw, tmp_path=tmp_path)


def _folder_overrides(settings, root: Path) -> dict:
    storages = dict(settings.STORAGES)
    storages["artifacts"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(root)},
    }
    return {"STORAGES": storages, "S3_BUCKET": "", "ARTIFACT_STORAGE_PATH": root}


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def folder_store(settings, tmp_path):
    """Artifacts in a fresh folder (the live server sees the same settings: it runs in-process)."""
    with override_settings(**_folder_overrides(settings, tmp_path / "artifacts")):
        artifacts.get_store.cache_clear()
        yield artifacts.get_store()
    artifacts.get_store.cache_clear()


@pytest.fixture(params=["folder", "s3"])
def any_store(request, settings, tmp_path):
    """Each test twice: on the folder store and on S3 (moto server, presigned part URLs)."""
    if request.param == "folder":
        overrides = _folder_overrides(settings, tmp_path / "artifacts")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"client-{uuid.uuid4().hex[:12]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        overrides = s3_settings(endpoint, bucket)
    with override_settings(**overrides):
        artifacts.get_store.cache_clear()
        yield artifacts.get_store()
    artifacts.get_store.cache_clear()


@pytest.fixture
def request_log():
    """``[(method, path, content_length, range_header)]`` of every request the live server got."""
    log: list[tuple[str, str, int, str]] = []

    def record(sender, environ=None, **kwargs):
        if environ is not None:
            log.append(
                (
                    environ.get("REQUEST_METHOD", ""),
                    environ.get("PATH_INFO", ""),
                    int(environ.get("CONTENT_LENGTH") or 0),
                    environ.get("HTTP_RANGE", ""),
                )
            )

    request_started.connect(record, weak=False, dispatch_uid="client-request-log")
    yield log
    request_started.disconnect(dispatch_uid="client-request-log")


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
