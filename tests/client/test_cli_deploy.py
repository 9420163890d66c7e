"""``modelyard deploy`` and ``predict`` against the deployments API (``/api/v1/deployments/``).

Contract: ``POST /api/v1/deployments/`` ``{"name", "model", "version"|"alias", "target"}`` → 202 with
``id`` and ``status``; ``GET /api/v1/deployments/{id}/`` with ``status`` and ``endpoint_url``;
``GET /api/v1/deployments/?name=…``; ``POST /api/v1/deployments/{id}/predict`` with an MLflow
scoring body → ``{"predictions": [...]}``.

The whole module is skipped only when the server under test does not route
``/api/v1/deployments/`` at all (the deployments API lives on another branch until it is merged);
once it is routed, every test here runs and must pass.
"""

from __future__ import annotations

import json

import pytest
from django.urls import Resolver404, resolve

try:
    resolve("/api/v1/deployments/")
except Resolver404:
    pytest.skip(
        "/api/v1/deployments/ is not routed in this server (deployments API not merged yet)",
        allow_module_level=True,
    )

from models_app.management.commands.seed_demo import DEMO, train
from tests.client.conftest import write_tree

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def iris_dir(tmp_path):
    spec = next(d for d in DEMO if d.name == "iris-species")
    files, _scores, _tags = train(spec, "tree")
    return write_tree(tmp_path / "iris", files), json.loads(files["input_example.json"])


def test_deploy_locally_and_predict(registry, folder_store, iris_dir, tmp_path):
    model_dir, example = iris_dir
    pushed = registry.cli("push", model_dir, "--model", "iris", "--alias", "candidate", "--quiet")
    assert pushed.returncode == 0, pushed.stderr

    result = registry.cli(
        "deploy", "iris:1", "--target", "local", "--name", "iris-local", "--json", "--timeout", "300"
    )
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
        predicted = registry.cli("predict", target, "--json", body, "--quiet")
        assert predicted.returncode == 0, predicted.stderr
        predictions = json.loads(predicted.stdout)["predictions"]
        assert len(predictions) == len(example["data"])
        assert all(p in (0, 1, 2) for p in predictions)


def test_deploy_by_alias_without_waiting(registry, folder_store, iris_dir):
    model_dir, _example = iris_dir
    assert (
        registry.cli("push", model_dir, "--model", "iris", "--alias", "candidate", "--quiet").returncode == 0
    )
    result = registry.cli("deploy", "iris@candidate", "--target", "local", "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    deployment = json.loads(result.stdout)
    assert deployment["id"] and deployment["status"]
    assert deployment["name"] == "iris-candidate"


def test_predict_on_an_unknown_deployment_is_one_line(registry, folder_store, tmp_path):
    body = tmp_path / "input.json"
    body.write_text(json.dumps({"inputs": [[1, 2, 3, 4]]}))
    result = registry.cli("predict", "no-such-deployment", "--json", body)
    assert result.returncode != 0
    assert result.stderr.strip() == "modelyard: error: No deployment named 'no-such-deployment'."
