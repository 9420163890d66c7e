"""Faults, each for real: the database connection drops, the artifact store fails, the broker
restarts, the worker dies mid-task, an upload client vanishes. Clear errors, nothing partial.

Services: PostgreSQL (``pg_terminate_backend``), S3 via moto server with faults injected at the
HTTP layer of botocore (``before-send`` events answer 500 for chosen operations: moto has no fault
injection of its own), a private ``redis-server`` started on a free port (never the shared one)
and real Celery worker subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from models_app import artifacts, services
from models_app.models import AuditEvent, Blob, ModelVersion, VersionFile

ROOT = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- The database connection drops mid-request ----------------------------------------------


def _terminate_own_backend_on(model, signal_name="pre_save"):
    """While active, saving ``model`` first kills this connection's backend from another one."""
    import psycopg
    from django.db.models import signals

    pid = connection.cursor().connection.info.backend_pid
    conninfo = connection.get_connection_params()
    fired = []

    def kill(sender, **kwargs):
        if fired:
            return
        fired.append(True)
        params = {k: v for k, v in conninfo.items() if k in ("host", "port", "user", "dbname", "password")}
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.1)

    getattr(signals, signal_name).connect(kill, sender=model, weak=False)
    return kill, fired


def test_database_connection_dropped_mid_request_is_503_and_leaves_nothing(
    transactional_db, postgres, api, owner, team
):
    """The backend serving a version-create request is terminated between its first write and
    its commit: the client gets 503 in the envelope, no version, no audit row; the next request
    reconnects and works."""
    from django.db.models import signals

    model = services.registered_model_create(actor=owner, name="dropme", team=team)
    client = api(owner)
    audits = AuditEvent.objects.count()
    kill, fired = _terminate_own_backend_on(ModelVersion)
    try:
        response = client.post("/api/v1/models/dropme/versions/", {"description": "x"}, format="json")
    finally:
        signals.pre_save.disconnect(kill, sender=ModelVersion)
    assert fired
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "unavailable"
    assert response["Retry-After"]
    connection.close()  # what the next request's close_old_connections does
    assert ModelVersion.objects.filter(model=model).count() == 0
    assert AuditEvent.objects.count() == audits
    retry = client.post("/api/v1/models/dropme/versions/", {"description": "x"}, format="json")
    assert retry.status_code == 201, retry.content
    assert ModelVersion.objects.filter(model=model).count() == 1


def test_a_connection_killed_between_requests_is_replaced(transactional_db, postgres, owner, team):
    """A persistent connection (CONN_MAX_AGE) killed while idle — a database restart or failover —
    is noticed by the health check at the next request, which then succeeds."""
    import psycopg
    from django.test import Client

    services.registered_model_create(actor=owner, name="idle", team=team)
    client = Client()
    client.force_login(owner)
    assert client.get("/models/idle/").status_code == 200
    pid = connection.cursor().connection.info.backend_pid
    params = {
        k: v
        for k, v in connection.get_connection_params().items()
        if k in ("host", "port", "user", "dbname", "password")
    }
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The test client keeps the connection across requests; a server runs the health check at
    # request start (CONN_HEALTH_CHECKS): the same call the request_started signal makes.
    from django.db import close_old_connections

    close_old_connections()
    assert client.get("/models/idle/").status_code == 200


# --- The artifact store fails ---------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_kwargs):
        yield self._body.read()

    def read(self, *_args, **_kwargs):
        return self._body.read()


@contextlib.contextmanager
def s3_failing(client, *operations: str):
    """Answer HTTP 500 for ``operations`` (e.g. PutObject) without reaching the server."""
    from botocore.awsrequest import AWSResponse

    calls = []

    def fail(request, **kwargs):
        calls.append(kwargs.get("event_name"))
        body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(body))

    events = [f"before-send.s3.{op}" for op in operations]
    for event in events:
        client.meta.events.register(event, fail, unique_id=f"fault-{event}")
    try:
        yield calls
    finally:
        for event in events:
            client.meta.events.unregister(event, unique_id=f"fault-{event}")


@pytest.fixture
def s3(moto_endpoint, settings):
    import boto3

    from tests.models_app.conftest import s3_settings

    bucket = f"fault-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    artifacts.get_store.cache_clear()
    with override_settings(**s3_settings(moto_endpoint, bucket), MODELYARD_S3_DOWNLOAD_REDIRECT=False):
        artifacts.get_store.cache_clear()
        from django.core.files.storage import storages

        storages._storages.pop("artifacts", None)
        yield artifacts.get_store()
    artifacts.get_store.cache_clear()


def _spool_empty(store) -> bool:
    spool = store.spool_dir()
    return not spool.exists() or not any(spool.iterdir())


def test_s3_500_on_put_is_503_and_keeps_nothing_then_recovers(api, owner, internal_model, s3):
    services.model_version_create(actor=owner, model=internal_model)
    client = api(owner)
    url = "/api/v1/models/churn/versions/1/files/m.bin"
    with s3_failing(s3.client, "PutObject", "CreateMultipartUpload", "UploadPart") as calls:
        response = client.put(url, data=b"weights", content_type="application/octet-stream")
    assert calls, "the fault was not reached"
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "unavailable" and "artifact store" in response.json()["message"]
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert list(s3.list_blob_keys()) == []
    assert _spool_empty(s3)
    ok = client.put(url, data=b"weights", content_type="application/octet-stream")
    assert ok.status_code == 201, ok.content
    assert [key for key, _t in s3.list_blob_keys()] == [_sha(b"weights")]


def test_s3_500_on_get_is_503_not_a_cut_stream(api, owner, internal_model, s3):
    version = services.model_version_create(actor=owner, model=internal_model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    client = api(owner)
    with s3_failing(s3.client, "GetObject"):
        response = client.get("/api/v1/models/churn/versions/1/files/m.bin")
    assert response.status_code == 503, response.status_code
    assert response.json()["error"] == "unavailable"
    assert b"".join(client.get("/api/v1/models/churn/versions/1/files/m.bin").streaming_content) == b"w"


def test_s3_500_on_complete_multipart_leaves_the_session_open(api, owner, internal_model, s3):
    version = services.model_version_create(actor=owner, model=internal_model)
    data = b"part-data"
    session = services.upload_session_begin(
        actor=owner, version=version, path="big.bin", size=9, sha256=_sha(data)
    )
    s3.client.upload_part(
        Bucket=s3.bucket,
        Key=s3._key(session.staging_key),
        UploadId=session.backend_upload_id,
        PartNumber=1,
        Body=data,
    )
    client = api(owner)
    with s3_failing(s3.client, "CompleteMultipartUpload", "ListParts"):
        response = client.post(f"/api/v1/uploads/{session.id}/complete")
    assert response.status_code == 503, response.content
    session.refresh_from_db()
    assert session.state == "open"
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert list(s3.list_blob_keys()) == []
    done = client.post(f"/api/v1/uploads/{session.id}/complete")
    assert done.status_code == 201, done.content
    assert VersionFile.objects.get().blob_id == _sha(data)


# --- An upload client vanishes mid-part ------------------------------------------------------


def test_a_client_that_vanishes_mid_part_leaves_no_part(
    live_server, owner, internal_model, settings, tmp_path
):
    """A raw socket announces a 1 MiB part, sends 1,000 bytes and closes (folder store; the whole
    file PUT case is in tests/models_app/test_api_version_files.py)."""
    from urllib.parse import urlparse

    version = services.model_version_create(actor=owner, model=internal_model)
    data = b"x" * 2048
    session = services.upload_session_begin(
        actor=owner, version=version, path="p.bin", size=2048, sha256=_sha(data)
    )
    store = artifacts.get_store()
    _token, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["write"])
    url = urlparse(live_server.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            (
                f"PUT /api/v1/uploads/{session.id}/parts/1 HTTP/1.1\r\nHost: {url.hostname}\r\n"
                f"Authorization: Bearer {raw}\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: 1048576\r\n\r\n"
            ).encode()
            + b"x" * 1000
        )
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.recv(1024)
    time.sleep(0.3)
    assert store.parts_list(session.staging_key, session.backend_upload_id) == []
    session.refresh_from_db()
    assert session.state == "open"
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert _spool_empty(store)
