"""Writes of MLflow tracking objects, and model versions made from what a run logged.

Same rules as every service: the actor's permission is checked, one transaction, an audit row.
Artifacts arrive through the ``mlflow-artifacts`` proxy as content-addressed blobs; a model
version registered from them references the same blobs (nothing is copied), gets its
``TrainingRun`` from the MLflow run (params, metrics, tags, ``mlflow.source.git.*`` as the code
revision) and its environment from ``MLmodel``/requirements, then is finalized READY.
"""

from __future__ import annotations

import re
import time
import uuid

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from lineage_app import selectors_mlflow as sel
from lineage_app.capture import environment_from_files
from lineage_app.models import MlflowArtifact, MlflowExperiment, MlflowLoggedModel, MlflowMetric, MlflowRun
from models_app import artifacts, selectors
from models_app.models import Blob, ModelVersion, RegisteredModel
from models_app.services import audit_record, blob_put, model_version_register

TEAM_TAG = "modelyard.team"
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
LOGGED_MODEL_STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000


def now_ms() -> int:
    return int(time.time() * 1000)


# --- Teams --------------------------------------------------------------------------------


def mlflow_team_resolve(*, actor, tags: dict[str, str], required: bool = True) -> Group | None:
    """The team that owns an object created through MLflow.

    The ``modelyard.team`` tag names it (the actor must contribute to it); without the tag it is
    the actor's only contributor team. With several teams and no tag the request is refused
    (``required``) or the object gets no team (runs: then only its creator and admins see it).
    """
    name = (tags or {}).get(TEAM_TAG, "").strip()
    if name:
        team = Group.objects.filter(name=name).first()
        if team is None or not actor.has_perm("models_app.add_registeredmodel", team):
            raise PermissionDenied(f"You cannot create objects in team '{name}' (no contributor role there).")
        return team
    teams = list(selectors.team_list_for_contribution(user=actor)[:2])
    if len(teams) == 1:
        return teams[0]
    if not required:
        return None
    if not teams:
        raise PermissionDenied("You are not a contributor of any team, so you cannot create models.")
    raise ValidationError(
        f"You contribute to several teams: say which one owns the model with the tag {TEAM_TAG}=<team>."
    )


def _require_write(actor, obj) -> None:
    if not sel.can_write(actor, obj):
        raise PermissionDenied(f"You cannot change {obj}.")


def _require_contributor(actor) -> None:
    if not actor.has_perm("models_app.add_modelversion"):
        raise PermissionDenied("Logging to MLflow needs a contributor role in a team.")


# --- Experiments and runs -----------------------------------------------------------------


def default_experiment_ensure() -> MlflowExperiment:
    """Experiment ``0`` ("Default"), which MLflow clients assume; recreated if someone flushed it."""
    experiment, _ = MlflowExperiment.objects.get_or_create(pk=0, defaults={"name": "Default"})
    return experiment


@transaction.atomic
def experiment_create(*, actor, name: str, tags: dict[str, str]) -> MlflowExperiment:
    """Create an experiment owned by the actor's team (see :func:`mlflow_team_resolve`)."""
    _require_contributor(actor)
    name = name.strip()
    if not name or len(name) > 500:
        raise ValidationError({"name": "Give an experiment name of 1-500 characters."})
    if MlflowExperiment.objects.filter(name=name).exists():
        from registry_project.errors import Conflict

        raise Conflict(f"Experiment(name={name}) already exists.", field="name")
    team = mlflow_team_resolve(actor=actor, tags=tags, required=False)
    experiment = MlflowExperiment.objects.create(
        name=name, team=team, created_by=actor, tags={k: v for k, v in tags.items() if k != TEAM_TAG}
    )
    audit_record(actor=actor, action="mlflow.experiment_created", obj=experiment, after={"name": name})
    return experiment


@transaction.atomic
def run_create(
    *, actor, experiment: MlflowExperiment, name: str, start_time: int | None, tags: dict[str, str]
) -> MlflowRun:
    """Start a run in ``experiment``; it belongs to the experiment's team, else the actor's."""
    _require_contributor(actor)
    _require_write(actor, experiment)
    run_id = uuid.uuid4().hex
    name = name or tags.get("mlflow.runName") or f"run-{run_id[:8]}"
    team = experiment.team or mlflow_team_resolve(actor=actor, tags=tags, required=False)
    run = MlflowRun.objects.create(
        run_id=run_id,
        experiment=experiment,
        team=team,
        created_by=actor,
        name=name[:250],
        start_time=start_time or now_ms(),
        tags={**_clean_tags(tags), "mlflow.runName": name[:250]},
    )
    audit_record(actor=actor, action="mlflow.run_created", obj=run, after={"experiment": experiment.pk})
    return run


def _clean_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not key or len(key) > 250:
            raise ValidationError({"tags": f"Tag key '{key[:50]}' must have 1-250 characters."})
        if len(value) > MAX_TAG_VALUE:
            raise ValidationError({"tags": f"Tag '{key}' is longer than {MAX_TAG_VALUE} characters."})
    return {k: v for k, v in tags.items() if k != TEAM_TAG}


@transaction.atomic
def run_update(
    *, actor, run: MlflowRun, status: str = "", end_time: int | None = None, name: str = ""
) -> MlflowRun:
    _require_write(actor, run)
    run = MlflowRun.objects.select_for_update().get(pk=run.pk)
    before = {"status": run.status}
    if status:
        if status not in RUN_STATUSES:
            raise ValidationError({"status": f"Use one of {', '.join(RUN_STATUSES)}."})
        run.status = status
    if end_time is not None:
        run.end_time = end_time
    if name:
        run.name = name[:250]
        run.tags = {**run.tags, "mlflow.runName": run.name}
    run.save()
    audit_record(
        actor=actor, action="mlflow.run_updated", obj=run, before=before, after={"status": run.status}
    )
    return run


@transaction.atomic
def run_log(
    *,
    actor,
    run: MlflowRun,
    params: dict[str, str] | None = None,
    metrics: list[dict] | None = None,
    tags: dict[str, str] | None = None,
) -> MlflowRun:
    """Log params (immutable once set), metrics (appended to their history) and tags."""
    _require_write(actor, run)
    run = MlflowRun.objects.select_for_update().get(pk=run.pk)
    for key, value in (params or {}).items():
        if not key or len(key) > 250:
            raise ValidationError({"params": f"Param key '{key[:50]}' must have 1-250 characters."})
        if len(value) > MAX_PARAM_VALUE:
            raise ValidationError({"params": f"Param '{key}' is longer than {MAX_PARAM_VALUE} characters."})
        if key in run.params and run.params[key] != value:
            raise ValidationError(
                f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                f"value='{run.params[key]}' for run ID='{run.run_id}'. Attempted logging new value '{value}'."
            )
        run.params[key] = value
    rows = []
    # MLflow keys a metric value by (key, timestamp, step, value): logging the same one again
    # (the client does, to link step-0 metrics to a logged model) only records the model id.
    known = set(
        MlflowMetric.objects.filter(run=run, key__in={m["key"] for m in metrics or []}).values_list(
            "key", "timestamp", "step", "value"
        )
    )
    for metric in metrics or []:
        identity = (metric["key"], metric["timestamp"], metric["step"], metric["value"])
        if identity in known:
            if metric.get("model_id"):
                MlflowMetric.objects.filter(
                    run=run, key=identity[0], timestamp=identity[1], step=identity[2], value=identity[3]
                ).update(model_id=metric["model_id"])
            continue
        known.add(identity)
        rows.append(
            MlflowMetric(
                run=run,
                key=metric["key"],
                value=metric["value"],
                timestamp=metric["timestamp"],
                step=metric["step"],
                model_id=metric.get("model_id", ""),
            )
        )
        latest = run.latest_metrics.get(metric["key"])
        if latest is None or (metric["step"], metric["timestamp"]) >= (latest["step"], latest["timestamp"]):
            run.latest_metrics[metric["key"]] = {
                "value": metric["value"],
                "timestamp": metric["timestamp"],
                "step": metric["step"],
            }
    MlflowMetric.objects.bulk_create(rows)
    if tags:
        run.tags.update(_clean_tags(tags))
    run.save()
    audit_record(
        actor=actor,
        action="mlflow.run_logged",
        obj=run,
        after={"params": sorted(params or {}), "metrics": len(rows), "tags": sorted(tags or {})},
    )
    return run


@transaction.atomic
def run_outputs_add(*, actor, run: MlflowRun, models: list[dict]) -> MlflowRun:
    _require_write(actor, run)
    run = MlflowRun.objects.select_for_update().get(pk=run.pk)
    known = {o["model_id"] for o in run.outputs}
    for item in models:
        if item["model_id"] not in known:
            run.outputs.append({"model_id": item["model_id"], "step": item.get("step", 0)})
    run.save(update_fields=["outputs", "updated_at"])
    return run


# --- Logged models ------------------------------------------------------------------------


@transaction.atomic
def logged_model_create(
    *,
    actor,
    experiment: MlflowExperiment,
    name: str,
    model_type: str = "",
    source_run: MlflowRun | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> MlflowLoggedModel:
    """Start a logged model (PENDING until its artifacts are uploaded and it is finalized)."""
    _require_contributor(actor)
    _require_write(actor, experiment)
    if source_run is not None:
        _require_write(actor, source_run)
    tags = tags or {}
    team = (
        experiment.team
        or (source_run.team if source_run else None)
        or mlflow_team_resolve(actor=actor, tags=tags, required=False)
    )
    logged = MlflowLoggedModel.objects.create(
        model_id=f"m-{uuid.uuid4().hex}",
        experiment=experiment,
        team=team,
        created_by=actor,
        name=(name or "model")[:500],
        model_type=model_type[:200],
        source_run=source_run,
        params=params or {},
        tags=_clean_tags(tags),
    )
    audit_record(actor=actor, action="mlflow.logged_model_created", obj=logged, after={"name": logged.name})
    return logged


@transaction.atomic
def logged_model_update(
    *,
    actor,
    logged: MlflowLoggedModel,
    status: str = "",
    tags: dict | None = None,
    delete_tag: str = "",
    params: dict | None = None,
) -> MlflowLoggedModel:
    """Finalize (status), set tags or params, or delete one tag of a logged model."""
    _require_write(actor, logged)
    logged = MlflowLoggedModel.objects.select_for_update().get(pk=logged.pk)
    before = {"status": logged.status}
    if status:
        if status not in LOGGED_MODEL_STATUSES:
            raise ValidationError({"status": f"Use one of {', '.join(LOGGED_MODEL_STATUSES)}."})
        logged.status = status
    if tags:
        logged.tags.update(_clean_tags(tags))
    if delete_tag:
        logged.tags.pop(delete_tag, None)
    if params:
        logged.params.update(params)
    logged.save()
    audit_record(
        actor=actor,
        action="mlflow.logged_model_updated",
        obj=logged,
        before=before,
        after={
            "status": logged.status,
            "tags": sorted(tags or {}),
            "params": sorted(params or {}),
            "deleted_tag": delete_tag or None,
        },
    )
    return logged


# --- Artifacts ------------------------------------------------------------------------------

_RUN_PATH = re.compile(r"^(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/|$)")
_MODEL_PATH = re.compile(r"^(?P<exp>\d+)/models/(?P<model>m-[0-9a-f]{32})/artifacts(?:/|$)")


def artifact_owner(*, user, path: str) -> MlflowRun | MlflowLoggedModel:
    """The run or logged model whose artifact root holds ``path`` (visible to ``user``).

    Raises ``ObjectDoesNotExist`` when the path is under nobody's root or not visible.
    """
    if match := _MODEL_PATH.match(path):
        return sel.logged_model_get(user=user, model_id=match["model"])
    if match := _RUN_PATH.match(path):
        return sel.run_get(user=user, run_id=match["run"])
    raise MlflowArtifact.DoesNotExist(
        f"'{path}' is not under a run's or logged model's artifact root on this server."
    )


def artifact_put(*, actor, path: str, stream, size: int | None) -> MlflowArtifact:
    """Store one uploaded file for a run or logged model: streamed, hashed, stored once."""
    path = artifacts.validate_file_path(path)
    owner = artifact_owner(user=actor, path=path)
    _require_write(actor, owner)
    if not path.startswith(owner.artifact_root + "/"):
        raise ValidationError({"path": f"Artifacts go under {owner.artifact_root}/."})
    blob = blob_put(stream=stream, size=size)
    with transaction.atomic():
        # Lock the blob row so gc_blobs cannot take it between storing and linking it.
        if not Blob.objects.select_for_update().filter(pk=blob.pk).exists():
            raise ValidationError({"file": "The content was collected while uploading; send it again."})
        item, created = MlflowArtifact.objects.update_or_create(
            path=path,
            defaults={
                "blob": blob,
                "run": owner if isinstance(owner, MlflowRun) else None,
                "logged_model": owner if isinstance(owner, MlflowLoggedModel) else None,
            },
        )
        audit_record(
            actor=actor,
            action="mlflow.artifact_stored",
            obj=item,
            after={"path": path, "sha256": blob.sha256, "size": blob.size, "replaced": not created},
        )
    return item


# --- Model versions from logged models and runs ---------------------------------------------

_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]{32})(?:/(?P<path>.*))?$")
_MODELS_ID_URI = re.compile(r"^models:/(?P<model>m-[0-9a-f]{32})/?$")
_MODELS_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")


def _artifact_path_of(uri: str) -> str:
    """``mlflow-artifacts:/0/x`` or ``mlflow-artifacts://host:port/0/x`` → ``0/x``."""
    rest = uri[len("mlflow-artifacts:") :]
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]
    return rest.strip("/")


def _resolve_source(*, actor, source: str, model_id: str, run_id: str):
    """``(files [(relpath, sha256)], run, logged_model, vouched)`` for an MLflow source URI."""
    logged = run = None
    if model_id or _MODELS_ID_URI.match(source):
        model_id = model_id or _MODELS_ID_URI.match(source)["model"]
        logged = sel.logged_model_source(user=actor, model_id=model_id)
        run = logged.source_run
        prefix = logged.artifact_root
    elif match := _RUNS_URI.match(source):
        run = sel.run_get(user=actor, run_id=match["run"])
        prefix = "/".join(p for p in (run.artifact_root, (match["path"] or "").strip("/")) if p)
    elif source.startswith("mlflow-artifacts:"):
        prefix = _artifact_path_of(source)
        if ".." in prefix.split("/"):
            raise ValidationError({"source": f"Invalid model version source: '{source}'."})
        owner = artifact_owner(user=actor, path=prefix)
        run, logged = (owner, None) if isinstance(owner, MlflowRun) else (owner.source_run, owner)
    elif match := _MODELS_VERSION_URI.match(source):
        model = selectors.registered_model_get(user=actor, name=match["name"])
        src = selectors.model_version_get(user=actor, model=model, version=int(match["version"]))
        files = [(f.path, f.blob_id) for f in src.files.all()]
        return files, None, None, frozenset()
    else:
        raise ValidationError(
            {
                "source": f"Unsupported model version source '{source}': give models:/m-<id>, "
                "runs:/<run>/<path>, "
                "mlflow-artifacts:/… or models:/<name>/<version> of this server."
            }
        )
    if run_id and run is None:
        run = sel.run_get(user=actor, run_id=run_id)
    files = [(path, sha) for path, sha, _size in sel.artifact_files(prefix)]
    return files, run, logged, frozenset(sha for _, sha in files)


def _lineage_document(*, run: MlflowRun | None, logged: MlflowLoggedModel | None, texts: dict) -> dict:
    document: dict = {}
    tags = dict(run.tags) if run else {}
    if logged:
        tags = {**logged.tags, **tags}
    params = {**(logged.params if logged else {}), **(run.params if run else {})}
    if run is not None:
        document["run"] = {
            "id": run.run_id,
            "pipeline": f"mlflow experiment {run.experiment_id}",
            "user": (run.created_by.get_username() if run.created_by else "")[:255],
            "status": run.status,
            "params": params,
            "metrics": {key: m["value"] for key, m in run.latest_metrics.items()},
            "tags": {k: v[:5000] for k, v in tags.items()},
        }
    elif params or tags:
        document["run"] = {"params": params, "tags": {k: v[:5000] for k, v in tags.items()}}
    commit = tags.get("mlflow.source.git.commit", "")
    if re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        document["code"] = {
            "commit": commit.lower(),
            "repo_url": tags.get("mlflow.source.git.repoURL", "")[:2000],
            "branch": tags.get("mlflow.source.git.branch", "")[:255],
            "entrypoint": tags.get("mlflow.source.name", "")[:1000],
            "dirty": tags.get("mlflow.source.git.dirty", "").lower() == "true",
        }
    found = environment_from_files(texts)
    if found:
        document["environment"] = {
            "python": found["python"][:50],
            "packages": [{"name": n, "version": v} for n, v in found["packages"]],
        }
    extra = {"mlflow": {"run_id": run.run_id if run else "", "model_id": logged.model_id if logged else ""}}
    if found and found["mlmodel"]:
        extra["mlmodel"] = found["mlmodel"]
    document["extra"] = extra
    return document


def _small_texts(attached: list[dict]) -> dict[str, str]:
    """The MLflow description files among ``attached`` (``{path, sha256, size}``), as text."""
    wanted = ("MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml")
    store = artifacts.get_store()
    return {
        item["path"]: b"".join(store.iter_bytes(item["sha256"])).decode("utf-8", "replace")
        for item in attached
        if item["path"].rsplit("/", 1)[-1] in wanted and item["size"] <= 1024 * 1024
    }


def mlflow_model_version_create(
    *,
    actor,
    model: RegisteredModel,
    source: str,
    run_id: str = "",
    model_id: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Register the files behind an MLflow source as the next version of ``model``, READY.

    The version references the logged model's (or run's) blobs, gets a TrainingRun from the
    MLflow run and an environment parsed from ``MLmodel``/requirements, and is finalized, all in
    the one transaction of ``model_version_register``.
    """
    from lineage_app.services import lineage_of_new_version

    files, run, logged, vouched = _resolve_source(
        actor=actor, source=source, model_id=model_id, run_id=run_id
    )
    if not files:
        raise ValidationError({"source": f"No files were logged under '{source}'."})

    def provenance(version: ModelVersion, attached: list[dict]) -> list:
        document = _lineage_document(run=run, logged=logged, texts=_small_texts(attached))
        return [lineage_of_new_version(version=version, document=document)]

    return model_version_register(
        actor=actor,
        model=model,
        files=[{"path": path, "sha256": sha} for path, sha in files],
        vouched_blobs=vouched,
        description=description,
        source=source[:2048],
        tags=tags or {},
        provenance=provenance,
    )
