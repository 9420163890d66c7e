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
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import override_settings

from models_app import artifacts, services
from models_app.models import AuditEvent, Blob, ModelVersion, RegisteredModel, VersionFile
from registry_project.rawsql import table
from tests.conftest import need_service

ROOT = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- The database connection drops mid-request ----------------------------------------------


def _other_connection():
    """A second, autocommit connection to the test database (psycopg, outside Django)."""
    import psycopg

    params = connection.get_connection_params()
    keep = ("host", "port", "user", "dbname", "password")
    return psycopg.connect(**{k: v for k, v in params.items() if k in keep}, autocommit=True)


def _terminate(pid: int) -> None:
    """End backend ``pid`` from another connection, and wait until it has: pg_terminate_backend
    only signals it."""
    with _other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(100):
            if not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} is still running")


@contextlib.contextmanager
def _terminate_own_backend_before(statement_prefix: str):
    """While active, the first statement of this connection that starts with
    ``statement_prefix`` first kills the connection's backend from another one, so that statement
    meets a dead session. An execute wrapper, not a model signal: the hot writes insert through
    hand-written statements (``rawsql.Inserter``) that send no signals. Yields the list that
    records it fired."""
    pid = connection.cursor().connection.info.backend_pid
    fired = []

    def kill(execute, sql, params, many, context):
        if not fired and sql.lstrip().startswith(statement_prefix):
            fired.append(sql)
            _terminate(pid)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(kill):
        yield fired


def test_database_connection_dropped_mid_request_is_503_and_leaves_nothing(
    transactional_db, postgres, api, owner, team
):
    """The backend serving a version-create request is terminated between its first write (the
    model's version counter) and its commit, as the version row is inserted: the client gets 503
    in the envelope, no version, no audit row; the next request reconnects and works."""
    model = services.registered_model_create(actor=owner, name="dropme", team=team)
    client = api(owner)
    audits = AuditEvent.objects.count()
    with _terminate_own_backend_before(f"INSERT INTO {table(ModelVersion)}") as fired:
        response = client.post("/api/v1/models/dropme/versions/", {"description": "x"}, format="json")
    assert fired
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "unavailable"
    assert response["Retry-After"]
    connection.close()  # what the next request's close_old_connections does
    assert ModelVersion.objects.filter(model=model).count() == 0
    assert AuditEvent.objects.count() == audits
    # The version number taken before the drop was rolled back with it: the retry gets 1.
    assert RegisteredModel.objects.get(pk=model.pk).last_version_number == 0
    retry = client.post("/api/v1/models/dropme/versions/", {"description": "x"}, format="json")
    assert retry.status_code == 201, retry.content
    assert retry.json()["version"] == 1
    assert ModelVersion.objects.filter(model=model).count() == 1


def test_a_connection_killed_between_requests_is_replaced(transactional_db, postgres, owner, team):
    """A persistent connection (CONN_MAX_AGE) killed while idle — a database restart or failover —
    is noticed by the health check at the next request, which then succeeds."""
    from django.test import Client

    services.registered_model_create(actor=owner, name="idle", team=team)
    client = Client()
    client.force_login(owner)
    assert client.get("/models/idle/").status_code == 200
    _terminate(connection.cursor().connection.info.backend_pid)
    # The test client keeps the connection across requests; a server runs the health check at
    # request start (CONN_HEALTH_CHECKS): the same call the request_started signal makes.
    from django.db import close_old_connections

    close_old_connections()
    assert client.get("/models/idle/").status_code == 200


def test_the_health_check_costs_no_round_trip_until_the_session_ends(transactional_db, postgres, monkeypatch):
    """A healthy idle connection is used as it is (its socket has nothing to read); once the
    server ends the session the socket is readable and the check finds it broken."""
    from django.db.backends.postgresql.base import DatabaseWrapper as Stock

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    calls = []
    real = Stock.is_usable
    monkeypatch.setattr(Stock, "is_usable", lambda self: calls.append(1) or real(self))
    assert connection.is_usable() and calls == []  # no SELECT 1 for a healthy connection
    _terminate(pid)
    assert not connection.is_usable() and calls == [1]
    connection.close()


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


# --- The broker restarts, the worker dies: a private redis-server and real workers --------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own on a free port (never the shared one on 6379)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/9"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path):
    need_service(shutil.which("redis-server") is not None, "redis-server (apt-get install redis-server)")
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


@contextlib.contextmanager
def celery_publishing_to(url: str):
    """Point this process's Celery app (the on-commit nudges) at ``url`` for the block."""
    from registry_project.celery import app

    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url  # Celery reads this variable before its own settings
    app.conf.broker_url, app.conf.broker_transport_options = url, {}
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield app
    finally:
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app.conf.broker_url, app.conf.broker_transport_options = saved
        app._pool = None
        app.amqp._producer_pool = None


def _send(broker_url: str, task: str, **kwargs) -> None:
    """Publish ``task`` to ``broker_url`` with an app of its own (the shared app is left alone)."""
    from celery import Celery

    publisher = Celery("fault-publisher", broker=broker_url, set_as_current=False)
    try:
        # An explicit connection: Celery prefers $CELERY_BROKER_URL over the app's broker.
        with publisher.connection_for_write(broker_url) as connection:
            publisher.send_task(task, kwargs=kwargs, connection=connection)
    finally:
        publisher.close()


def _worker_env(broker_url: str, **extra: str) -> dict:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "registry_project.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        + db["NAME"],
        "CELERY_BROKER_URL": broker_url,
        "MODELYARD_VAR_DIR": str(django_settings.VAR_DIR),
        "ARTIFACT_STORAGE_PATH": str(django_settings.ARTIFACT_STORAGE_PATH),
        "SECRET_KEY": django_settings.SECRET_KEY,
        "MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1",
        "MODELYARD_WEBHOOK_TIMEOUT_SECONDS": "5",
        "S3_BUCKET": "",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def celery_worker(env: dict, log: Path):
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "registry_project",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 recording the delivery ids it got."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.deliveries.append(self.headers.get("X-Modelyard-Delivery", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def test_events_pending_while_redis_restarts_are_delivered_once(
    transactional_db, postgres, private_redis, owner, team, api, settings, tmp_path
):
    from models_app import services_events
    from models_app.choices import DeliveryState
    from models_app.models import WebhookDelivery

    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver()
    services.registered_model_create(actor=owner, name="outbox", team=team)
    services_events.webhook_create(actor=owner, name="r", url=receiver.url, events=["*"])
    log = tmp_path / "worker.log"
    with celery_publishing_to(private_redis.url), celery_worker(_worker_env(private_redis.url), log):
        _wait_for(lambda: b"ready." in log.read_bytes(), 90, "the worker to start", log)
        private_redis.kill()  # the broker goes away; the worker keeps trying to reconnect
        response = api(owner).patch("/api/v1/models/outbox/", {"description": "while down"}, format="json")
        assert response.status_code == 200, response.content  # committed; the nudge only logged
        delivery = WebhookDelivery.objects.get(event__type="model.updated")
        assert delivery.state == DeliveryState.PENDING and receiver.deliveries == []
        private_redis.start()  # same port, empty: the nudge that was lost is not in it
        for _ in range(3):  # the periodic dispatcher's ticks (beat, every 30 s), and a duplicate
            _send(private_redis.url, "models_app.tasks.webhook_deliveries_dispatch_task")
        _wait_for(lambda: receiver.deliveries, 120, "the delivery after the restart", log)
        time.sleep(3)  # give a duplicate every chance to arrive
    receiver.shutdown()
    assert receiver.deliveries.count(str(delivery.delivery_id)) == 1, receiver.deliveries
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts == 1


def test_a_worker_killed_mid_task_has_the_task_redelivered_and_completed(
    transactional_db, postgres, private_redis, owner, team, tmp_path
):
    """SIGKILL of the pool process running ``version_ready_task``: acks_late and
    reject_on_worker_lost put the message back, a fresh process runs it to the end once."""
    from models_app.models import Check

    markers = tmp_path / "markers"
    markers.mkdir()
    model = services.registered_model_create(actor=owner, name="killme", team=team)
    version = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    log = tmp_path / "worker.log"
    env = _worker_env(
        private_redis.url,
        DJANGO_SETTINGS_MODULE="tests.registry_project.fault_settings",
        FAULT_MARKER_DIR=str(markers),
    )
    with celery_worker(env, log):
        _wait_for(lambda: b"ready." in log.read_bytes(), 90, "the worker to start", log)
        services.model_version_finalize(actor=owner, version=version)
        # What finalize enqueues after commit, sent to this test's own broker.
        _send(private_redis.url, "models_app.tasks.version_ready_task", version_id=version.pk)
        first = _wait_for(lambda: list(markers.iterdir()), 60, "the task to start", log)
        child = int(first[0].read_text())
        os.kill(child, signal.SIGKILL)
        _wait_for(lambda: len(list(markers.iterdir())) >= 2, 90, "the redelivered task", log)
        _wait_for(
            lambda: (
                {"loadable", "security_scan"}
                <= set(Check.objects.filter(version=version).values_list("name", flat=True))
            ),
            120,
            "the built-in checks of the redelivered task",
            log,
        )
        text = log.read_text(errors="replace")
    runs = sorted(markers.iterdir())
    assert len(runs) == 2, runs  # killed once, completed once: not run a third time
    assert int(runs[1].read_text()) != child
    assert "WorkerLostError" in text or "SIGKILL" in text
    names = list(Check.objects.filter(version=version, builtin=True).values_list("name", flat=True))
    assert sorted(names) == sorted(set(names))  # each check once


def test_a_version_finalized_while_redis_is_down_gets_its_checks_from_the_sweep(
    transactional_db, postgres, private_redis, owner, team, tmp_path
):
    """The queueing after commit is lost with the broker; beat's sweep, once Redis is back,
    queues the version-ready hooks again and a real worker runs them, once."""
    from models_app.models import Check

    model = services.registered_model_create(actor=owner, name="lost-hooks", team=team)
    version = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    log = tmp_path / "worker.log"
    env = _worker_env(private_redis.url, MODELYARD_READY_HOOKS_GRACE_MINUTES="1")
    with celery_publishing_to(private_redis.url), celery_worker(env, log):
        _wait_for(lambda: b"ready." in log.read_bytes(), 90, "the worker to start", log)
        private_redis.kill()
        services.model_version_finalize(actor=owner, version=version)  # committed; queueing only logged
        version.refresh_from_db()
        assert version.status == "READY" and version.ready_hooks_done_at is None
        private_redis.start()  # same port, empty: the lost message is not in it
        # The grace (1 minute for this worker) has passed, as far as the sweep can tell.
        earlier = version.finalized_at - timedelta(minutes=2)
        ModelVersion.objects.filter(pk=version.pk).update(finalized_at=earlier)
        _send(private_redis.url, "models_app.tasks.version_ready_hooks_sweep_task")  # beat's tick
        _wait_for(
            lambda: ModelVersion.objects.filter(pk=version.pk, ready_hooks_done_at__isnull=False).exists(),
            120,
            "the hooks queued by the sweep",
            log,
        )
        checks = sorted(Check.objects.filter(version=version, builtin=True).values_list("name", flat=True))
        assert checks == ["loadable", "security_scan"]
        done = ModelVersion.objects.get(pk=version.pk).ready_hooks_done_at
        _send(private_redis.url, "models_app.tasks.version_ready_hooks_sweep_task")  # the next tick
        _wait_for(lambda: log.read_bytes().count(b"version_ready_hooks_sweep_task") >= 4, 60, "the tick", log)
        time.sleep(2)
    assert ModelVersion.objects.get(pk=version.pk).ready_hooks_done_at == done  # not run again
    assert log.read_bytes().count(b"Queued the version-ready hooks again for 1 version(s)") == 1
