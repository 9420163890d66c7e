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
    for name, value in _folder_overrides(settings, tmp_path / "artifacts").items():
        setattr(settings, name, value)  # via pytest-django's settings: undone in order, no leak
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
    for name, value in overrides.items():
        setattr(settings, name, value)  # via pytest-django's settings: undone in order, no leak
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


class _S3Proxy:
    """A logging reverse proxy in front of the moto server: the registry's presigned part URLs
    point here, so tests can see which part bytes reached the bucket (moto keeps no such log)."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        self.log: list[tuple[str, str, int]] = []
        log = self.log

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                log.append((self.command, self.path, len(body)))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                if self.command == "HEAD":  # no body, but the object's length
                    self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3_proxy_store(settings, moto_endpoint):
    """S3 storage (moto) reached through :class:`_S3Proxy`; yields ``(store, proxy)``."""
    proxy = _S3Proxy(moto_endpoint)
    bucket = f"client-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    with override_settings(**s3_settings(proxy.url, bucket)):
        artifacts.get_store.cache_clear()
        yield artifacts.get_store(), proxy
    artifacts.get_store.cache_clear()
    proxy.close()
