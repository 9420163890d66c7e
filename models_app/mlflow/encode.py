"""Tracking objects in MLflow's JSON (proto field names), and the stage and status names.

Registered models and versions are encoded from rows by ``models_app.mlflow.reads``.
"""

from __future__ import annotations

from models_app.choices import Stage, VersionStatus
from registry_project.rawsql import ms

STAGE_TO_MLFLOW = {
    Stage.NONE: "None",
    Stage.STAGING: "Staging",
    Stage.PRODUCTION: "Production",
    Stage.ARCHIVED: "Archived",
}
STAGE_FROM_MLFLOW = {label.lower(): stage for stage, label in STAGE_TO_MLFLOW.items()}
STATUS_TO_MLFLOW = {
    VersionStatus.READY: "READY",
    VersionStatus.PENDING: "PENDING_REGISTRATION",
    VersionStatus.FAILED: "FAILED_REGISTRATION",
}


def key_values(mapping: dict, key: str = "key") -> list[dict]:
    return [{key: k, "value": v} for k, v in mapping.items()]


# --- Tracking -------------------------------------------------------------------------------


def experiment(exp) -> dict:
    data = {
        "experiment_id": str(exp.pk),
        "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/{exp.pk}",
        "lifecycle_stage": exp.lifecycle_stage,
        "last_update_time": ms(exp.updated_at),
        "creation_time": ms(exp.created_at),
    }
    if exp.tags:
        data["tags"] = key_values(exp.tags)
    return data


def run_info(run) -> dict:
    info = {
        "run_uuid": run.run_id,
        "run_id": run.run_id,
        "experiment_id": str(run.experiment_id),
        "run_name": run.name,
        "user_id": run.created_by.get_username() if run.created_by else "",
        "status": run.status,
        "start_time": run.start_time or 0,
        "artifact_uri": f"mlflow-artifacts:/{run.artifact_root}",
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time:
        info["end_time"] = run.end_time
    return info


def run(run) -> dict:
    data = {}
    if run.latest_metrics:
        data["metrics"] = [
            {"key": k, "value": m["value"], "timestamp": m["timestamp"], "step": m["step"]}
            for k, m in run.latest_metrics.items()
        ]
    if run.params:
        data["params"] = key_values(run.params)
    if run.tags:
        data["tags"] = key_values(run.tags)
    out = {"info": run_info(run), "data": data, "inputs": {}}
    if run.outputs:
        out["outputs"] = {
            "model_outputs": [{"model_id": o["model_id"], "step": o["step"]} for o in run.outputs]
        }
    return out


def logged_model(logged) -> dict:
    info = {
        "model_id": logged.model_id,
        "experiment_id": str(logged.experiment_id),
        "name": logged.name,
        "creation_timestamp_ms": ms(logged.created_at),
        "last_updated_timestamp_ms": ms(logged.updated_at),
        "artifact_uri": f"mlflow-artifacts:/{logged.artifact_root}",
        "status": logged.status,
        "model_type": logged.model_type,
        "source_run_id": logged.source_run.run_id if logged.source_run_id else "",
    }
    if logged.status_message:
        info["status_message"] = logged.status_message
    if logged.tags:
        info["tags"] = key_values(logged.tags)
    data = {}
    if logged.params:
        data["params"] = key_values(logged.params)
    return {"info": info, "data": data}
