"""Tracking RPCs that ``log_model``/``load_model`` need: experiments, runs, logged models."""

from __future__ import annotations

import math

from django.http import HttpResponse

from lineage_app import selectors_mlflow as sel
from lineage_app import services_mlflow as svc
from lineage_app.models import MlflowExperiment, MlflowLoggedModel, MlflowMetric, MlflowRun
from models_app.mlflow import encode, search, tokens
from models_app.mlflow.errors import invalid, missing, not_found
from models_app.mlflow.rpc import Params, endpoint

MLFLOW_VERSION = "3.17.2"


# --- Experiments ----------------------------------------------------------------------------


def _experiment(user, raw: str) -> MlflowExperiment:
    if raw == "0":
        svc.default_experiment_ensure()
    try:
        return sel.experiment_list(user=user).get(pk=int(raw))
    except (ValueError, MlflowExperiment.DoesNotExist) as exc:
        raise not_found(f"No Experiment with id={raw} exists") from exc


@endpoint("GET")
def experiment_get(request, params: Params):
    return {
        "experiment": encode.experiment(_experiment(request.user, params.str("experiment_id", required=True)))
    }


@endpoint("GET")
def experiment_get_by_name(request, params: Params):
    name = params.str("experiment_name", required=True)
    exp = sel.experiment_list(user=request.user).filter(name=name).first()
    if exp is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return {"experiment": encode.experiment(exp)}


@endpoint("POST")
def experiment_create(request, params: Params):
    exp = svc.experiment_create(
        actor=request.user, name=params.str("name", required=True), tags=params.key_values("tags")
    )
    return {"experiment_id": str(exp.pk)}


@endpoint("POST", "GET", write=False)
def experiment_search(request, params: Params):
    max_results = params.int("max_results", default=1000)
    if max_results < 1 or max_results > 50_000:
        raise invalid("Invalid value for parameter 'max_results': give 1 to 50000.")
    qs = sel.experiment_list(user=request.user).filter(lifecycle_stage="active")
    for clause in search.parse(params.str("filter")):
        if clause.kind != "attribute" or clause.key != "name":
            raise invalid(f"Invalid filter on '{clause.key}': only name is supported here.")
        qs = qs.filter(search.string_q("name", clause, allow_in=False))
    offset = tokens.decode(params.str("page_token") or None)
    rows = list(qs.order_by("pk")[offset : offset + max_results + 1])
    body: dict = {}
    if rows:
        body["experiments"] = [encode.experiment(e) for e in rows[:max_results]]
    if len(rows) > max_results:
        body["next_page_token"] = tokens.encode(offset + max_results)
    return body


# --- Runs -----------------------------------------------------------------------------------


def _run(user, params: Params) -> MlflowRun:
    run_id = params.str("run_id") or params.str("run_uuid")
    if not run_id:
        raise missing("run_id")
    try:
        return sel.run_get(user=user, run_id=run_id)
    except MlflowRun.DoesNotExist as exc:
        raise not_found(f"Run with id={run_id} not found") from exc


@endpoint("POST")
def run_create(request, params: Params):
    experiment = _experiment(request.user, params.str("experiment_id", default="0"))
    run = svc.run_create(
        actor=request.user,
        experiment=experiment,
        name=params.str("run_name"),
        start_time=params.int("start_time"),
        tags=params.key_values("tags"),
    )
    return {"run": encode.run(run)}


@endpoint("GET")
def run_get(request, params: Params):
    return {"run": encode.run(_run(request.user, params))}


@endpoint("POST")
def run_update(request, params: Params):
    run = svc.run_update(
        actor=request.user,
        run=_run(request.user, params),
        status=params.str("status"),
        end_time=params.int("end_time"),
        name=params.str("run_name"),
    )
    return {"run_info": encode.run_info(run)}


def _metric(item: dict, *, default_ts: int) -> dict:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
        raise invalid("Invalid metric: expected {'key': …, 'value': …, 'timestamp': …, 'step': …}.")
    try:
        value = float(item.get("value"))
        timestamp = int(item.get("timestamp") or default_ts)
        step = int(item.get("step") or 0)
    except (TypeError, ValueError) as exc:
        raise invalid(f"Invalid value of metric '{item['key']}': numbers expected.") from exc
    if math.isnan(value) or math.isinf(value):
        raise invalid(f"Metric '{item['key']}' is not a finite number; Modelyard stores finite values only.")
    return {
        "key": item["key"][:250],
        "value": value,
        "timestamp": timestamp,
        "step": step,
        "model_id": str(item.get("model_id") or "")[:40],
    }


@endpoint("POST")
def run_log_batch(request, params: Params):
    run = _run(request.user, params)
    now = svc.now_ms()
    metrics = [_metric(m, default_ts=now) for m in params.list("metrics")]
    if len(metrics) > 1000 or len(params.list("params")) > 100 or len(params.list("tags")) > 100:
        raise invalid("A batch holds at most 1000 metrics, 100 params and 100 tags.")
    svc.run_log(
        actor=request.user,
        run=run,
        params=params.key_values("params"),
        metrics=metrics,
        tags=params.key_values("tags"),
    )
    return {}


@endpoint("POST")
def run_log_parameter(request, params: Params):
    run = _run(request.user, params)
    svc.run_log(actor=request.user, run=run, params={params.str("key", required=True): params.str("value")})
    return {}


@endpoint("POST")
def run_log_metric(request, params: Params):
    run = _run(request.user, params)
    metric = _metric(params.data, default_ts=svc.now_ms())
    svc.run_log(actor=request.user, run=run, metrics=[metric])
    return {}


@endpoint("POST")
def run_set_tag(request, params: Params):
    run = _run(request.user, params)
    svc.run_log(actor=request.user, run=run, tags={params.str("key", required=True): params.str("value")})
    return {}


@endpoint("POST")
def run_outputs(request, params: Params):
    run = _run(request.user, params)
    models = []
    for item in params.list("models"):
        if not isinstance(item, dict) or not isinstance(item.get("model_id"), str):
            raise invalid("Invalid value for 'models': expected [{'model_id': …, 'step': …}].")
        models.append({"model_id": item["model_id"], "step": int(item.get("step") or 0)})
    svc.run_outputs_add(actor=request.user, run=run, models=models)
    return {}


@endpoint("GET")
def metric_history(request, params: Params):
    run = _run(request.user, params)
    key = params.str("metric_key", required=True)
    max_results = params.int("max_results", default=25_000)
    if max_results < 1 or max_results > 25_000:
        raise invalid("Invalid value for parameter 'max_results': give 1 to 25000.")
    offset = tokens.decode(params.str("page_token") or None)
    rows = list(MlflowMetric.objects.filter(run=run, key=key)[offset : offset + max_results + 1])
    body: dict = {}
    if rows:
        body["metrics"] = [
            {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
            for m in rows[:max_results]
        ]
    if len(rows) > max_results:
        body["next_page_token"] = tokens.encode(offset + max_results)
    return body


# --- Logged models --------------------------------------------------------------------------


def _logged(user, model_id: str) -> MlflowLoggedModel:
    try:
        return sel.logged_model_get(user=user, model_id=model_id)
    except MlflowLoggedModel.DoesNotExist as exc:
        raise not_found(f"Logged model with ID '{model_id}' not found.") from exc


@endpoint("POST")
def logged_model_create(request, params: Params):
    experiment = _experiment(request.user, params.str("experiment_id", required=True))
    source_run = None
    if source_run_id := params.str("source_run_id"):
        try:
            source_run = sel.run_get(user=request.user, run_id=source_run_id)
        except MlflowRun.DoesNotExist as exc:
            raise not_found(f"Run with id={source_run_id} not found") from exc
    logged = svc.logged_model_create(
        actor=request.user,
        experiment=experiment,
        name=params.str("name"),
        model_type=params.str("model_type"),
        source_run=source_run,
        params=params.key_values("params"),
        tags=params.key_values("tags"),
    )
    return {"model": encode.logged_model(logged)}


@endpoint("GET", "PATCH", "DELETE")
def logged_model(request, params: Params, model_id: str):
    logged = _logged(request.user, model_id)
    if request.method == "GET":
        return {"model": encode.logged_model(logged)}
    if request.method == "DELETE":
        raise invalid(
            "Deleting logged models is not supported by Modelyard; their files back model versions."
        )
    logged = svc.logged_model_update(
        actor=request.user, logged=logged, status=params.str("status", required=True)
    )
    return {"model": encode.logged_model(logged)}


@endpoint("PATCH")
def logged_model_tags(request, params: Params, model_id: str):
    svc.logged_model_update(
        actor=request.user, logged=_logged(request.user, model_id), tags=params.key_values("tags")
    )
    return {}


@endpoint("DELETE")
def logged_model_tag_delete(request, params: Params, model_id: str, key: str):
    svc.logged_model_update(actor=request.user, logged=_logged(request.user, model_id), delete_tag=key)
    return {}


@endpoint("POST")
def logged_model_params(request, params: Params, model_id: str):
    logged = _logged(request.user, model_id)
    extra = params.key_values("params")
    if extra:
        svc.logged_model_update(actor=request.user, logged=logged, params=extra)
    return {}


_LM_ATTRIBUTES = {
    "name": "name",
    "model_type": "model_type",
    "status": "status",
    "source_run_id": "source_run__run_id",
    "model_id": "model_id",
}
_LM_ORDER = {"creation_timestamp": "created_at", "last_updated_timestamp": "updated_at", "name": "name"}


@endpoint("POST", write=False)
def logged_model_search(request, params: Params):
    qs = sel.logged_model_list(user=request.user)
    ids = [str(i) for i in params.list("experiment_ids")]
    if ids:
        try:
            qs = qs.filter(experiment_id__in=[int(i) for i in ids])
        except ValueError as exc:
            raise invalid(f"Invalid experiment_ids {ids}.") from exc
    for clause in search.parse(params.str("filter")):
        if clause.kind == "attribute" and clause.key in _LM_ATTRIBUTES:
            qs = qs.filter(search.string_q(_LM_ATTRIBUTES[clause.key], clause, allow_in=True))
        else:
            raise invalid(f"Invalid filter on '{clause.key}': use {', '.join(_LM_ATTRIBUTES)}.")
    ordering = []
    for item in params.list("order_by"):
        field = _LM_ORDER.get(str(item.get("field_name", "")) if isinstance(item, dict) else "")
        if field is None:
            raise invalid(
                f"Invalid order_by {item!r}: use creation_timestamp, last_updated_timestamp or name."
            )
        ordering.append(field if item.get("ascending", True) else f"-{field}")
    max_results = params.int("max_results", default=100)
    if max_results < 1 or max_results > 1000:
        raise invalid("Invalid value for parameter 'max_results': give 1 to 1000.")
    offset = tokens.decode(params.str("page_token") or None)
    rows = list(qs.order_by(*(ordering or ["-created_at"]), "pk")[offset : offset + max_results + 1])
    body: dict = {}
    if rows:
        body["models"] = [encode.logged_model(m) for m in rows[:max_results]]
    if len(rows) > max_results:
        body["next_page_token"] = tokens.encode(offset + max_results)
    return body


# --- Server info ----------------------------------------------------------------------------


@endpoint("GET")
def server_info(request, params: Params):
    return {
        "store_type": "SqlStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "artifact_serving_enabled": True,
        "tracking_auth": "modelyard",
        "artifacts_presigned_only": False,
    }


def health(request):
    return HttpResponse("OK", content_type="text/plain")


def version(request):
    return HttpResponse(MLFLOW_VERSION, content_type="text/plain")
