"""Provenance captured from MLflow model files when a version becomes READY."""

from __future__ import annotations

import io

from lineage_app.capture import environment_from_files, parse_conda, parse_requirements, strip_credentials
from lineage_app.models import TrainingRun
from models_app import services
from models_app.tasks import version_ready_task

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.2
mlflow_version: 3.17.2
model_uuid: 0f4c
run_id: 5a1b2c
signature:
  inputs: '[{"type": "double", "name": "age", "required": true}]'
  outputs: '[{"type": "long", "required": true}]'
"""
REQUIREMENTS = (
    "mlflow==3.17.2\ncloudpickle==3.1.0\nnumpy==1.26.4\nscikit-learn==1.5.2\n-r extra.txt\npandas>=2\n"
)
PYTHON_ENV = "python: 3.11.7\nbuild_dependencies:\n- pip==24.0\ndependencies:\n- -r requirements.txt\n"
CONDA = (
    "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip<=24.0\n- pip:\n"
    "  - mlflow==3.17.2\n  - TensorFlow==2.11.0\nname: mlflow-env\n"
)


def test_parsers():
    assert parse_requirements(REQUIREMENTS) == [
        ("cloudpickle", "3.1.0"),
        ("mlflow", "3.17.2"),
        ("numpy", "1.26.4"),
        ("scikit-learn", "1.5.2"),
    ]
    assert parse_conda(CONDA) == {
        "python": "3.11.7",
        "packages": [("mlflow", "3.17.2"), ("tensorflow", "2.11.0")],
    }
    assert (
        strip_credentials("https://user:tok@git.example.com:8443/a.git")
        == "https://git.example.com:8443/a.git"
    )
    assert strip_credentials("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    env = environment_from_files(
        {"model/MLmodel": MLMODEL, "model/requirements.txt": REQUIREMENTS, "model/conda.yaml": CONDA}
    )
    assert env["python"] == "3.11.7" and ("tensorflow", "2.11.0") in env["packages"]
    assert (
        env["mlmodel"]["flavors"] == ["python_function", "sklearn"] and env["mlmodel"]["run_id"] == "5a1b2c"
    )
    assert environment_from_files({"README.md": "hi"}) is None


def test_an_mlflow_model_directory_fills_the_environment_when_ready(
    api, owner, internal_model, django_capture_on_commit_callbacks
):
    version = services.model_version_create(actor=owner, model=internal_model)
    for path, text in {
        "MLmodel": MLMODEL,
        "requirements.txt": REQUIREMENTS,
        "python_env.yaml": PYTHON_ENV,
    }.items():
        data = text.encode()
        services.version_file_upload(
            actor=owner, version=version, path=path, stream=io.BytesIO(data), size=len(data)
        )
    services.version_file_upload(
        actor=owner, version=version, path="model.pkl", stream=io.BytesIO(b"x"), size=1
    )
    with django_capture_on_commit_callbacks():
        services.model_version_finalize(actor=owner, version=version)
    version_ready_task.apply(kwargs={"version_id": version.pk})
    run = TrainingRun.objects.get(version=version)
    assert run.environment.python == "3.11.7"
    assert dict(run.environment.packages.values_list("name", "version"))["scikit-learn"] == "1.5.2"
    assert run.extra["mlmodel"]["signature"]["inputs"].startswith("[")
    exposure = api(owner).get("/api/v1/lineage/exposure?package=scikit-learn&specifier=<1.6").json()
    assert [v["version"] for v in exposure["versions"]] == [version.version]
    version_ready_task.apply(kwargs={"version_id": version.pk})  # idempotent
    assert TrainingRun.objects.filter(version=version).count() == 1
