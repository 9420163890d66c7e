"""``modelyard deploy`` and ``predict`` against the deployments API (``/api/v1/deployments/``).

Contract: ``POST /api/v1/deployments/`` ``{"name", "model", "version"|"alias", "target"}`` → 202 with
``id`` and ``status``; ``GET /api/v1/deployments/{id}/`` with ``status`` and ``endpoint_url``;
``GET /api/v1/deployments/?name=…``; ``POST /api/v1/deployments/{id}/predict`` with an MLflow
scoring body → ``{"predictions": [...]}``.

A real Celery worker on Redis (``tests/deployments_app/conftest.py``) launches the deployments;
the owner pushes with a read/write token and a deployer of the same team deploys and predicts.
"""

from __future__ import annotations

import json
import time

import pytest

from models_app import artifacts, services
from models_app.choices import TeamRole
from models_app.management.commands.seed_demo import DEMO, train
from tests.client.conftest import write_tree
from tests.conftest import make_user
from tests.deployments_app.conftest import worker  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(600)]


@pytest.fixture
def deployer_env(registry, team):
    """CLI environment of a deployer of ``risk`` (contributors push; deployers deploy)."""
    deployer = make_user("deployer", team=team, role=TeamRole.DEPLOYER)
    _token, raw = services.access_token_create(
        actor=deployer, user=deployer, name="cli", scopes=["read", "write", "predict"]
    )
    return registry.env(MODELYARD_TOKEN=raw)


@pytest.fixture(autouse=True)
def _deployments_settled(registry):
    """After each test, wait until the worker is done with every deployment, then stop them.

    Otherwise the worker (a deploy sent with ``--no-wait``) or its reconcile loop still writes
    deployment rows while the test database is flushed, and the flush's TRUNCATE can deadlock
    with it (seen in CI: the flush failed and the next test inherited the rows).
    """
    from django.contrib.auth.models import User

    from deployments_app import services as deployments
    from deployments_app.models import Deployment

    yield
    busy = ("queued", "building", "starting", "stopping")
    deadline = time.monotonic() + 300
    while Deployment.objects.filter(status__in=busy).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    admin = User.objects.filter(is_superuser=True).first() or User.objects.create_superuser("cleanup")
    live = Deployment.objects.exclude(status__in=("stopped", "failed"))
    for deployment in live:
        deployments.deployment_stop(actor=admin, deployment=deployment)
    deadline = time.monotonic() + 60
    while live.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _worker_store():
    """The worker reads the settings' artifact folder (pinned by ``worker``): write there too."""
    artifacts.get_store.cache_clear()
    yield
    artifacts.get_store.cache_clear()


@pytest.fixture
def iris_dir(tmp_path):
    spec = next(d for d in DEMO if d.name == "iris-species")
    files, _scores, _tags = train(spec, "tree")
    return write_tree(tmp_path / "iris", files), json.loads(files["input_example.json"])


@pytest.mark.usefixtures("worker")
def test_deploy_locally_and_predict(registry, deployer_env, iris_dir, tmp_path):
    model_dir, example = iris_dir
    pushed = registry.cli("push", model_dir, "--model", "iris", "--alias", "candidate", "--quiet")
    assert pushed.returncode == 0, pushed.stderr

    result = registry.cli(
        "deploy", "iris:1", "--target", "local", "--name", "iris-local", "--json", "--timeout", "300",
        env=deployer_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployment = json.loads(result.stdout)
    assert deployment["name"] == "iris-local"
    assert deployment["endpoint_url"]

    with registry.client() as client:
        listed = client.deployments(name="iris-local")
        assert [d["id"] for d in listed] == [deployment["id"]]
        assert client.deployment(deployment["id"])["status"] == deployment["status"]

    body = tmp_path / "input.json"
    body.write_text(json.dumps({"dataframe_split": example}))
    for target in (str(deployment["id"]), "iris-local"):  # by id and by name
        predicted = registry.cli("predict", target, "--json", body, "--quiet", env=deployer_env)
        assert predicted.returncode == 0, predicted.stderr
        predictions = json.loads(predicted.stdout)["predictions"]
        assert len(predictions) == len(example["data"])
        assert all(p in (0, 1, 2) for p in predictions)


@pytest.mark.usefixtures("worker")
def test_deploy_by_alias_without_waiting(registry, deployer_env, iris_dir):
    model_dir, _example = iris_dir
    assert (
        registry.cli("push", model_dir, "--model", "iris", "--alias", "candidate", "--quiet").returncode == 0
    )
    result = registry.cli(
        "deploy", "iris@candidate", "--target", "local", "--no-wait", "--json", env=deployer_env
    )
    assert result.returncode == 0, result.stderr
    deployment = json.loads(result.stdout)
    assert deployment["id"] and deployment["status"]
    assert deployment["name"] == "iris-candidate"


def test_predict_on_an_unknown_deployment_is_one_line(registry, deployer_env, tmp_path):
    body = tmp_path / "input.json"
    body.write_text(json.dumps({"inputs": [[1, 2, 3, 4]]}))
    result = registry.cli("predict", "no-such-deployment", "--json", body, env=deployer_env)
    assert result.returncode != 0
    assert result.stderr.strip() == "modelyard: error: No deployment named 'no-such-deployment'."
