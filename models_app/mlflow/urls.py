"""Routes of the MLflow-compatible API, mounted by ``registry_project.urls``.

``tracking_patterns`` live under ``/api/2.0/mlflow/`` (and ``/ajax-api/2.0/mlflow/``),
``artifact_patterns`` under ``/api/2.0/mlflow-artifacts/``.
"""

from django.urls import path, re_path

from models_app.mlflow import views_artifacts as art
from models_app.mlflow import views_registry as reg
from models_app.mlflow import views_tracking as trk

tracking_patterns = [
    path("registered-models/create", reg.registered_model_create),
    path("registered-models/get", reg.registered_model_get),
    path("registered-models/rename", reg.registered_model_rename),
    path("registered-models/update", reg.registered_model_update),
    path("registered-models/delete", reg.registered_model_delete),
    path("registered-models/search", reg.registered_model_search),
    path("registered-models/get-latest-versions", reg.registered_model_latest_versions),
    path("registered-models/set-tag", reg.registered_model_set_tag),
    path("registered-models/delete-tag", reg.registered_model_delete_tag),
    path("registered-models/alias", reg.registered_model_alias),
    path("model-versions/create", reg.model_version_create),
    path("model-versions/get", reg.model_version_get),
    path("model-versions/update", reg.model_version_update),
    path("model-versions/delete", reg.model_version_delete),
    path("model-versions/search", reg.model_version_search),
    path("model-versions/transition-stage", reg.model_version_transition_stage),
    path("model-versions/get-download-uri", reg.model_version_download_uri),
    path("model-versions/set-tag", reg.model_version_set_tag),
    path("model-versions/delete-tag", reg.model_version_delete_tag),
    path("experiments/get", trk.experiment_get),
    path("experiments/get-by-name", trk.experiment_get_by_name),
    path("experiments/create", trk.experiment_create),
    path("experiments/search", trk.experiment_search),
    path("runs/create", trk.run_create),
    path("runs/get", trk.run_get),
    path("runs/update", trk.run_update),
    path("runs/log-batch", trk.run_log_batch),
    path("runs/log-parameter", trk.run_log_parameter),
    path("runs/log-metric", trk.run_log_metric),
    path("runs/set-tag", trk.run_set_tag),
    path("runs/outputs", trk.run_outputs),
    path("metrics/get-history", trk.metric_history),
    path("logged-models", trk.logged_model_create),
    path("logged-models/search", trk.logged_model_search),
    path("logged-models/<str:model_id>", trk.logged_model),
    path("logged-models/<str:model_id>/tags", trk.logged_model_tags),
    path("logged-models/<str:model_id>/tags/<path:key>", trk.logged_model_tag_delete),
    path("logged-models/<str:model_id>/params", trk.logged_model_params),
    path("server-info", trk.server_info),
]

artifact_patterns = [
    path("artifacts", art.artifact_list),
    path("artifacts/<path:path>", art.artifact),
    re_path(r"^(?:mpu/(?:create|complete|abort)|presigned)/(?P<path>.*)$", art.not_enabled),
]
