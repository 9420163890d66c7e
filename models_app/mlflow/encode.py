"""Catalog and tracking objects in MLflow's JSON (proto field names, string versions, READY)."""

from __future__ import annotations

import re
from datetime import datetime

from django.db.models import F, OuterRef, QuerySet, Subquery

from models_app.choices import Stage, VersionStatus
from models_app.models import ModelVersion, RegisteredModel

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
_MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


def ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value else 0


def key_values(mapping: dict, key: str = "key") -> list[dict]:
    return [{key: k, "value": v} for k, v in mapping.items()]


def with_run_id(qs: QuerySet[ModelVersion]) -> QuerySet[ModelVersion]:
    """Versions annotated with the id of the MLflow run that produced them (one LEFT JOIN)."""
    return qs.annotate(mlflow_run_id=F("training_run__external_id"))


def model_version(version: ModelVersion, model: RegisteredModel | None = None) -> dict:
    model = model or version.model
    data = {
        "name": model.name,
        "version": str(version.version),
        "creation_timestamp": ms(version.created_at),
        "last_updated_timestamp": ms(version.updated_at),
        "current_stage": STAGE_TO_MLFLOW.get(version.stage, "None"),
        "description": version.description,
        "source": version.source,
        "run_id": getattr(version, "mlflow_run_id", None) or "",
        "status": STATUS_TO_MLFLOW.get(version.status, "READY"),
        "run_link": "",
    }
    if version.created_by_id and version.created_by:
        data["user_id"] = version.created_by.get_username()
    if version.status_message:
        data["status_message"] = version.status_message
    tags = [{"key": t.key, "value": t.value} for t in version.tags.all()]
    if tags:
        data["tags"] = tags
    aliases = sorted(a.alias for a in version.aliases.all())
    if aliases:
        data["aliases"] = aliases
    if match := _MODEL_ID.match(version.source or ""):
        data["model_id"] = match[1]
    return data


def latest_versions(models: list[RegisteredModel], stages: list[str] | None = None) -> dict[int, list]:
    """Per model, the highest version in each stage (what MLflow calls ``latest_versions``)."""
    if not models:
        return {}
    top = (
        ModelVersion.objects.filter(model_id=OuterRef("model_id"), stage=OuterRef("stage"))
        .order_by("-version")
        .values("version")[:1]
    )
    qs = ModelVersion.objects.filter(model_id__in=[m.pk for m in models], version=Subquery(top))
    if stages is not None:
        qs = qs.filter(stage__in=stages)
    qs = with_run_id(qs.select_related("created_by").prefetch_related("tags", "aliases"))
    order = list(STAGE_TO_MLFLOW)
    found: dict[int, list] = {}
    for version in sorted(qs, key=lambda v: (order.index(v.stage), v.version)):
        found.setdefault(version.model_id, []).append(version)
    return found


def registered_model(model: RegisteredModel, latest: list[ModelVersion] | None = None) -> dict:
    data = {
        "name": model.name,
        "creation_timestamp": ms(model.created_at),
        "last_updated_timestamp": ms(model.updated_at),
    }
    if model.description:
        data["description"] = model.description
    if model.created_by_id and model.created_by:
        data["user_id"] = model.created_by.get_username()
    if latest:
        data["latest_versions"] = [model_version(v, model) for v in latest]
    tags = [{"key": t.key, "value": t.value} for t in model.tags.all()]
    if tags:
        data["tags"] = tags
    aliases = [{"alias": a.alias, "version": str(a.version.version)} for a in model.aliases.all()]
    if aliases:
        data["aliases"] = sorted(aliases, key=lambda a: a["alias"])
    return data


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
