"""End to end, for real: a Celery worker (with beat) on Redis builds and runs deployments.

The worker is ``celery -A registry_project worker -Q deployments,celery -B`` started as a
subprocess on the test database (``DATABASE_URL`` points it at pytest-django's database) and the
test's artifact folder. Deployments go through the API; predictions go through the registry's
proxy (a live server) and straight to the runtime, in both protocols. Targets: ``local`` (a
process) and ``docker`` (podman's Docker-compatible socket, a real image build).

Skipped without Redis or podman; failed instead under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import urllib3

from deployments_app.models import Deployment
from tests.conftest import need_service
from tests.deployments_app.conftest import (
    BASE_IMAGE,
    SOCKET,
    X,
    onnx_files,
    ready_version,
    sklearn_model,
    skops_files,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(900)]

ROW = [[0.5, 1.0]]
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 1.0]}]}
MLFLOW_BODY = {"dataframe_split": {"columns": ["a", "b"], "data": ROW}}
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))


@pytest.fixture(autouse=True)
def _default_artifact_store():
    """The worker reads the settings' artifact folder: the test must write there too, not to a
    store some earlier test left cached (a tmp folder, or moto's S3)."""
    from models_app import artifacts

    artifacts.get_store.cache_clear()
    yield
    artifacts.get_store.cache_clear()


def wait_for(deployment_id: int, predicate, *, timeout: float, what: str) -> Deployment:
    deadline = time.monotonic() + timeout
    d = None
    while time.monotonic() < deadline:
        d = Deployment.objects.filter(pk=deployment_id).first()
        if d is not None and predicate(d):
            return d
        if d is not None and d.status == "failed" and "failed" not in what:
            lines = "\n".join(d.log_lines.values_list("line", flat=True)[:200])
            pytest.fail(f"deployment failed while waiting for {what}: {d.error}\n{lines}")
        time.sleep(0.2)
    state = f"{d.status} gen {d.generation}" if d else "deleted"
    pytest.fail(f"timed out after {timeout} s waiting for {what} (now {state})")


def wait_for_checks(*versions, timeout: float = 120) -> None:
    from models_app.models import Check

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Check.objects.filter(version__in=versions, name="loadable").exclude(status="running").count()
        if done == len(versions):
            return
        time.sleep(0.3)
    found = list(Check.objects.filter(version__in=versions).values_list("name", "status", "summary"))
    pytest.fail(f"the built-in checks did not finish: {found}")


def post_json(url: str, body: dict, token: str | None = None) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.request("POST", url, body=json.dumps(body).encode(), headers=headers)


def predict_token(user) -> str:
    from models_app import services

    _token, raw = services.access_token_create(actor=user, user=user, name="predict", scopes=["predict"])
    return raw


class Hammer:
    """Clients sending predictions through the proxy in a loop, counting every failure."""

    def __init__(self, url: str, token: str, threads: int = 2) -> None:
        self.url, self.token = url, token
        self.ok = 0
        self.failures: list[str] = []
        self.answers: set[int] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))
        while not self._stop.is_set():
            try:
                r = pool.request(
                    "POST",
                    self.url,
                    body=json.dumps(MLFLOW_BODY).encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
                )
                if r.status == 200:
                    self.ok += 1
                    self.answers.add(json.loads(r.data)["predictions"][0])
                else:
                    self.failures.append(f"{r.status} {r.data[:200]!r}")
            except Exception as exc:
                self.failures.append(repr(exc))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def _lifecycle(target, *, api, deployer, owner, model, live_server, timeout: float, timings: dict):
    """Deploy, predict (proxy + direct, both protocols), rolling redeploy, kill, stop, delete."""
    v1 = ready_version(owner, model, skops_files())
    v2 = ready_version(owner, model, skops_files(flip=True))
    wait_for_checks(v1, v2)  # the worker runs them; a deployer deploys checked versions
    client = api(deployer)
    name = f"churn-{target}"
    started = time.monotonic()
    response = client.post(
        "/api/v1/deployments/",
        {"name": name, "model": model.name, "version": 1, "target": target, "env": {"GREETING": "hi"}},
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued" and response.json()["env"] == {"GREETING": "********"}
    pk = response.json()["id"]
    d = wait_for(pk, lambda d: d.status == "running", timeout=timeout, what="running")
    timings["post_to_running"] = round(time.monotonic() - started, 2)
    if os.environ.get("SHOW_TIMELINE"):
        for e in d.events.all():
            print(e.created_at.strftime("%H:%M:%S.%f")[:-3], e.status, e.message[:80])
        for line in d.log_lines.all():
            print(line.created_at.strftime("%H:%M:%S.%f")[:-3], line.line[:100])
    statuses = list(d.events.values_list("status", flat=True))
    assert statuses[:4] == ["queued", "building", "starting", "running"], statuses

    # Through the registry: /predict picks the protocol from the body; /serve/ keeps the paths.
    token = predict_token(deployer)
    base = live_server.url
    expected = int(sklearn_model().predict(ROW)[0])
    r = post_json(f"{base}/api/v1/deployments/{pk}/predict", MLFLOW_BODY, token)
    assert r.status == 200, r.data
    assert json.loads(r.data)["predictions"] == [expected]
    r = post_json(f"{base}/api/v1/deployments/{pk}/predict", V2_BODY, token)
    assert r.status == 200, r.data
    assert json.loads(r.data)["outputs"][0]["data"][0] == expected
    r = post_json(f"{base}/serve/{name}/v2/models/{name}/infer", V2_BODY, token)
    assert r.status == 200 and r.headers["X-Modelyard-Deployment"] == name
    r = http.request(
        "GET", f"{base}/serve/{name}/v2/health/ready", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status == 200
    assert post_json(f"{base}/serve/{name}/invocations", MLFLOW_BODY).status == 401  # no credential
    # Straight to the runtime, both protocols.
    assert json.loads(post_json(f"{d.endpoint_url}/invocations", MLFLOW_BODY).data)["predictions"] == [
        expected
    ]
    r = post_json(f"{d.endpoint_url}/v2/models/{name}/infer", V2_BODY)
    assert r.status == 200 and json.loads(r.data)["outputs"][0]["data"][0] == expected
    assert client.get(f"/api/v1/deployments/{pk}/").json()["logs"], "the build log is captured"

    # Rolling redeploy to v2 while clients hammer the proxy: not one failed request.
    old_instance = d.instance_id
    with Hammer(f"{base}/serve/{name}/invocations", token) as hammer:
        time.sleep(0.5)
        started = time.monotonic()
        r = client.post(f"/api/v1/deployments/{pk}/redeploy", {"version": v2.version}, format="json")
        assert r.status_code == 202, r.json()
        d = wait_for(pk, lambda d: d.status == "running" and d.generation == 2, timeout=timeout, what="v2")
        timings["redeploy_to_running"] = round(time.monotonic() - started, 2)
        time.sleep(2.5)  # past the drain: the old instance is stopped while requests continue
    assert hammer.failures == [], hammer.failures[:5]
    assert hammer.ok > 20 and hammer.answers == {expected, 1 - expected}  # served by v1, then v2
    assert d.instance_id != old_instance and d.version_id == v2.pk
    return pk, d, token


@pytest.fixture
def podman(worker):
    import docker

    try:
        engine = docker.DockerClient(base_url=SOCKET, timeout=900)
        engine.ping()
        engine.images.get(BASE_IMAGE)
    except Exception as exc:
        need_service(False, f"a container engine at {SOCKET} with {BASE_IMAGE} ({type(exc).__name__})")
    yield engine
    for container in engine.containers.list(all=True, filters={"label": "io.modelyard.deployment"}):
        container.remove(force=True)
    for image in engine.images.list(filters={"label": "io.modelyard.deployment"}):
        with contextlib.suppress(Exception):
            engine.images.remove(image.id, force=True)
    engine.close()


@pytest.mark.django_db(transaction=True)
def test_local_deployment_end_to_end(worker, api, deployer, owner, internal_model, live_server):
    timings: dict = {}
    pk, d, token = _lifecycle(
        "local", api=api, deployer=deployer, owner=owner, model=internal_model, live_server=live_server,
        timeout=60, timings=timings,
    )  # fmt: skip
    print(f"local timings: {timings}")
    assert timings["post_to_running"] < 30

    # Kill the process: reconcile (beat, every 3 s here) restarts it as a new generation.
    os.kill(int(d.instance_id), signal.SIGKILL)
    killed = time.monotonic()
    d = wait_for(pk, lambda d: d.status == "running" and d.restarts == 1, timeout=60, what="restart")
    assert time.monotonic() - killed < 60
    assert "is gone; restarting" in " ".join(d.events.values_list("message", flat=True))
    r = post_json(f"{live_server.url}/api/v1/deployments/{pk}/predict", MLFLOW_BODY, token)
    assert r.status == 200
    # Reconcile also reads the instance's prediction counter into the model's usage ("most used").
    from models_app.models import ModelUsage

    deadline = time.monotonic() + 30
    while not ModelUsage.objects.filter(model=internal_model, kind="prediction").exists():
        assert time.monotonic() < deadline, "reconcile never counted the predictions"
        time.sleep(0.5)

    # Stop, then delete.
    client = api(deployer)
    pid = int(d.instance_id)
    assert client.post(f"/api/v1/deployments/{pk}/stop").status_code == 202
    d = wait_for(pk, lambda d: d.status == "stopped", timeout=30, what="stopped")
    assert d.endpoint_url == "" and _gone(pid)
    r = post_json(f"{live_server.url}/api/v1/deployments/{pk}/predict", MLFLOW_BODY, token)
    assert r.status == 503 and "stopped" in json.loads(r.data)["message"]
    assert client.delete(f"/api/v1/deployments/{pk}/").status_code == 204
    assert not Deployment.objects.filter(pk=pk).exists()


def _gone(pid: int) -> bool:
    """The process exited (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.django_db(transaction=True)
def test_an_onnx_model_is_served_locally(worker, api, deployer, owner, internal_model, live_server):
    ready_version(owner, internal_model, onnx_files())
    r = api(deployer).post(
        "/api/v1/deployments/", {"name": "churn-onnx", "model": "churn", "version": 1}, format="json"
    )
    assert r.status_code == 202 and r.json()["target"] == "local"  # the default target
    d = wait_for(r.json()["id"], lambda d: d.status == "running", timeout=60, what="running")
    body = {"inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "data": X[:2].ravel().tolist()}]}
    r = post_json(f"{live_server.url}/api/v1/deployments/{d.pk}/predict", body, predict_token(deployer))
    assert r.status == 200, r.data
    outputs = json.loads(r.data)["outputs"]
    assert [0, 0] in [o["data"] for o in outputs], outputs  # the labels of X[:2]
    assert api(deployer).delete(f"/api/v1/deployments/{d.pk}/").status_code == 202
    deadline = time.monotonic() + 30
    while Deployment.objects.filter(pk=d.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Deployment.objects.filter(pk=d.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_build_left_by_a_dead_worker_is_completed(worker, deployer, owner, internal_model):
    """A worker killed mid-build leaves ``building`` with a lease; reconcile resumes it."""
    from django.utils import timezone

    from deployments_app.models import DeploymentEvent

    version = ready_version(owner, internal_model, skops_files())
    d = Deployment.objects.create(
        name="orphan", model=internal_model, version=version, target="local", requested_by=deployer,
        status="building", lease_until=timezone.now() - timezone.timedelta(seconds=1), attempts=1,
    )  # fmt: skip
    DeploymentEvent.objects.create(deployment=d, status="building", message="the worker died here")
    d = wait_for(d.pk, lambda d: d.status == "running", timeout=60, what="resumed build")
    assert "resumed after a lost worker" in " ".join(d.events.values_list("message", flat=True))
    assert d.attempts == 2
    os.killpg(int(d.instance_id), signal.SIGKILL)
    Deployment.objects.filter(pk=d.pk).update(desired_state="stopped", status="stopped", instance_id="")


@pytest.mark.django_db(transaction=True)
def test_docker_deployment_end_to_end(worker, podman, api, deployer, owner, internal_model, live_server):
    timings: dict = {}
    pk, d, token = _lifecycle(
        "docker", api=api, deployer=deployer, owner=owner, model=internal_model, live_server=live_server,
        timeout=600, timings=timings,
    )  # fmt: skip
    container = podman.containers.get(d.instance_id)
    assert container.labels["io.modelyard.deployment"] == str(pk)
    assert d.image == f"modelyard-dep-{pk}:g2"
    # The second generation reused the requirements layer: no pip run in its build log.
    gen2 = " ".join(d.log_lines.filter(generation=2).values_list("line", flat=True))
    assert "is cached" in gen2 and "pip install" not in gen2
    print(f"docker timings: {timings}")

    # Kill the container: reconcile starts a new one.
    container.kill()
    d = wait_for(pk, lambda d: d.status == "running" and d.restarts == 1, timeout=90, what="restart")
    assert d.instance_id != container.id
    r = post_json(f"{live_server.url}/api/v1/deployments/{pk}/predict", V2_BODY, token)
    assert r.status == 200, r.data

    client = api(deployer)
    assert client.delete(f"/api/v1/deployments/{pk}/").status_code == 202  # live: stopped first
    deadline = time.monotonic() + 60
    while Deployment.objects.filter(pk=pk).exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not Deployment.objects.filter(pk=pk).exists()
    assert podman.containers.list(all=True, filters={"label": f"io.modelyard.deployment={pk}"}) == []
    assert podman.images.list(filters={"label": f"io.modelyard.deployment={pk}"}) == []
