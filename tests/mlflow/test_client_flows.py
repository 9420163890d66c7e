"""End-to-end flows of the stock mlflow client: log, register, alias, stage, load, predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineage_app.models import MlflowArtifact, TrainingRun
from models_app.choices import PromotionState, Stage, VersionStatus
from models_app.models import AuditEvent, ModelVersion, Promotion, RegisteredModel, VersionFile

pytest.importorskip("mlflow")
import mlflow
import mlflow.sklearn
import sklearn
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

REQS = [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]


def _log(model, registered_model_name=None, **kwargs):
    return mlflow.sklearn.log_model(
        model, name="m", registered_model_name=registered_model_name, pip_requirements=REQS, **kwargs
    )


def test_log_model_outside_a_run_registers_a_ready_version(mlflow_as, client, owner, team, sk_model):
    mlflow_as(owner)
    model, x, _ = sk_model
    info = _log(model, registered_model_name="churn")
    assert str(info.registered_model_version) == "1"
    registered = RegisteredModel.objects.get(name="churn")
    assert registered.team == team
    version = ModelVersion.objects.get(model=registered, version=1)
    assert version.status == VersionStatus.READY
    # The version's files are the logged model's blobs, stored once.
    artifacts = {a.path.rsplit("/artifacts/", 1)[1]: a.blob_id for a in MlflowArtifact.objects.all()}
    files = dict(VersionFile.objects.filter(version=version).values_list("path", "blob_id"))
    assert "MLmodel" in files
    assert files == artifacts
    mv = client.get_model_version("churn", "1")
    assert mv.status == "READY"
    assert mv.source.startswith("models:/m-")
    loaded = mlflow.pyfunc.load_model("models:/churn/1")
    assert list(loaded.predict(x[:5])) == list(model.predict(x[:5]))
    assert AuditEvent.objects.filter(action="version.finalized", model_name="churn").exists()


def test_log_model_inside_a_run_keeps_params_metrics_and_environment(mlflow_as, client, owner, sk_model):
    mlflow_as(owner)
    model, x, _ = sk_model
    mlflow.set_experiment("churn-exp")
    with mlflow.start_run() as run:
        mlflow.log_param("C", "1.0")
        mlflow.log_metric("acc", 0.9)
        mlflow.log_metric("acc", 0.95, step=1)
        _log(model, registered_model_name="churn", input_example=x[:2])
    version = ModelVersion.objects.get(model__name="churn", version=1)
    training = TrainingRun.objects.select_related("environment").get(version=version)
    assert training.external_id == run.info.run_id
    assert training.params["C"] == "1.0"
    assert training.metrics["acc"] == 0.95
    assert training.environment is not None
    assert "scikit-learn" in set(training.environment.packages.values_list("name", flat=True))
    assert client.get_model_version("churn", "1").run_id == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "acc")
    assert [m.value for m in history] == [0.9, 0.95]
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.data.params == {"C": "1.0"}
    # Both example files came through the artifact proxy and belong to the version.
    paths = set(VersionFile.objects.filter(version=version).values_list("path", flat=True))
    assert {"input_example.json", "serving_input_example.json", "MLmodel"} <= paths


def test_register_model_from_runs_and_models_uris(mlflow_as, client, owner, sk_model):
    mlflow_as(owner)
    model, x, _ = sk_model
    with mlflow.start_run() as run:
        info = _log(model)
    first = mlflow.register_model(f"runs:/{run.info.run_id}/m", "fraud")
    assert first.version == "1"
    second = mlflow.register_model(f"models:/{info.model_id}", "fraud")
    assert second.version == "2"
    copy = client.copy_model_version("models:/fraud/1", "fraud-copy")
    assert copy.version == "1"
    v1 = ModelVersion.objects.get(model__name="fraud", version=1)
    v_copy = ModelVersion.objects.get(model__name="fraud-copy", version=1)
    assert set(v1.files.values_list("blob_id", flat=True)) == set(
        v_copy.files.values_list("blob_id", flat=True)
    )
    loaded = mlflow.pyfunc.load_model("models:/fraud-copy/1")
    assert list(loaded.predict(x[:3])) == list(model.predict(x[:3]))


def test_aliases_tags_rename_and_delete(mlflow_as, client, owner, sk_model):
    mlflow_as(owner)
    model, x, _ = sk_model
    _log(model, registered_model_name="churn")
    _log(model, registered_model_name="churn")
    client.set_registered_model_alias("churn", "challenger", "2")
    assert client.get_model_version_by_alias("churn", "challenger").version == "2"
    assert client.get_registered_model("churn").aliases == {"challenger": "2"}
    loaded = mlflow.sklearn.load_model("models:/churn@challenger")
    assert list(loaded.predict(x[:4])) == list(model.predict(x[:4]))
    client.set_registered_model_alias("churn", "challenger", "1")  # moves
    assert client.get_model_version_by_alias("churn", "challenger").version == "1"
    client.delete_registered_model_alias("churn", "challenger")
    with pytest.raises(MlflowException) as exc:
        client.get_model_version_by_alias("churn", "challenger")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    # Protected aliases move only through approved promotions.
    with pytest.raises(MlflowException) as exc:
        client.set_registered_model_alias("churn", "champion", "1")
    assert exc.value.error_code == "PERMISSION_DENIED"

    client.set_registered_model_tag("churn", "task", "classification")
    client.set_model_version_tag("churn", "1", "validated", "yes")
    assert client.get_registered_model("churn").tags == {"task": "classification"}
    assert client.get_model_version("churn", "1").tags == {"validated": "yes"}
    client.delete_registered_model_tag("churn", "task")
    client.delete_model_version_tag("churn", "1", "validated")
    assert client.get_registered_model("churn").tags == {}

    client.update_registered_model("churn", description="Predicts churn.")
    client.update_model_version("churn", "1", description="first")
    client.rename_registered_model("churn", "churn-v2")
    assert client.get_registered_model("churn-v2").description == "Predicts churn."
    assert client.get_model_version("churn-v2", "1").description == "first"
    client.delete_model_version("churn-v2", "2")
    assert [v.version for v in client.search_model_versions("name = 'churn-v2'")] == ["1"]
    client.delete_registered_model("churn-v2")
    assert not RegisteredModel.objects.filter(name="churn-v2").exists()
    assert AuditEvent.objects.filter(action="model.deleted").exists()


def test_stages_follow_the_promotion_policy(mlflow_as, client, owner, sk_model):
    mlflow_as(owner)
    model, x, _ = sk_model
    _log(model, registered_model_name="churn")
    _log(model, registered_model_name="churn")
    from models_app.services_governance import policy_update

    registered = RegisteredModel.objects.get(name="churn")
    # The default policy wants the built-in `loadable` check, which has not run here.
    with pytest.raises(MlflowException) as exc:
        client.transition_model_version_stage("churn", "1", "Staging")
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert "loadable" in exc.value.message
    policy_update(actor=owner, model=registered, required_checks={})
    staged = client.transition_model_version_stage("churn", "1", "staging")
    assert staged.current_stage == "Staging"
    client.transition_model_version_stage("churn", "2", "Staging", archive_existing_versions=True)
    assert client.get_model_version("churn", "1").current_stage == "Archived"
    latest = client.get_latest_versions("churn", stages=["Staging"])
    assert [v.version for v in latest] == ["2"]
    loaded = mlflow.pyfunc.load_model("models:/churn/Staging")
    assert list(loaded.predict(x[:2])) == list(model.predict(x[:2]))
    # Production needs an approval: the answer is PERMISSION_DENIED and a request waits.
    with pytest.raises(MlflowException) as exc:
        client.transition_model_version_stage("churn", "2", "Production")
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert "approval" in exc.value.message
    promotion = Promotion.objects.get(version__model=registered, target_stage=Stage.PRODUCTION)
    assert promotion.state == PromotionState.PENDING
    assert promotion.version.version == 2
    assert ModelVersion.objects.get(model=registered, version=2).stage == Stage.STAGING
    with pytest.raises(MlflowException) as exc:
        client.transition_model_version_stage("churn", "2", "Bogus")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"


def test_download_artifacts_of_a_version_and_a_run(mlflow_as, client, owner, sk_model, tmp_path):
    mlflow_as(owner)
    model, _, _ = sk_model
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/readme.txt")
        _log(model, registered_model_name="churn")
    target = mlflow.artifacts.download_artifacts(artifact_uri="models:/churn/1", dst_path=str(tmp_path / "v"))
    assert (tmp_path / "v" / "MLmodel").exists() or any(
        p.name == "MLmodel" for p in (tmp_path / "v").rglob("*")
    )
    assert target
    notes = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes", dst_path=str(tmp_path)
    )
    assert (Path(notes) / "readme.txt").read_text() == "hello"
    assert [f.path for f in client.list_artifacts(run.info.run_id, "notes")] == ["notes/readme.txt"]


def test_viewer_cannot_register_and_outsider_cannot_see_private_models(
    mlflow_as, client, owner, viewer, outsider, private_model, sk_model
):
    mlflow_as(owner)
    model, _, _ = sk_model
    _log(model, registered_model_name="fraud")  # the private model of the fixture
    mlflow_as(viewer)
    assert client.get_registered_model("fraud").name == "fraud"
    with pytest.raises(MlflowException) as exc:
        _log(model, registered_model_name="viewer-model")
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert not RegisteredModel.objects.filter(name="viewer-model").exists()
    mlflow_as(outsider)
    with pytest.raises(MlflowException) as exc:
        client.get_registered_model("fraud")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_registered_models(filter_string="name = 'fraud'") == []
    assert client.search_model_versions("name = 'fraud'") == []
    with pytest.raises(MlflowException):
        mlflow.pyfunc.load_model("models:/fraud/1")
    mlflow_as(owner, ["read"])
    with pytest.raises(MlflowException) as exc:
        client.set_registered_model_tag("fraud", "k", "v")
    assert exc.value.error_code == "PERMISSION_DENIED"
