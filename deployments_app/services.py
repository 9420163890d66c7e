"""Writes of deployments: requests from users and tools, and the steps workers run.

Users' services (``deployment_request``, ``_stop``, ``_start``, ``_redeploy``, ``_delete``,
``_event_report``) check permissions, change the row in one transaction, write an audit record
(and so an event) and enqueue the worker's step after commit. Worker steps
(``deployment_launch``, ``deployment_halt``, ``deployments_reconcile``) take ids, claim their
work with a compare-and-set on ``status`` (and ``generation``), and are safe to run twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from deployments_app.backends import DeployError, LaunchSpec, TransientDeployError, get_backend
from deployments_app.choices import IN_PROGRESS, DeploymentStatus, DesiredState, Target
from deployments_app.models import Deployment, DeploymentEvent, DeploymentLogLine
from models_app import webhooks
from models_app.choices import CheckStatus, VersionStatus
from models_app.models import Check, ModelAlias, ModelVersion, RegisteredModel
from models_app.pickle_scan import PICKLE_SUFFIXES
from models_app.services import _require, audit_record
from registry_project import rawsql
from registry_project.errors import Conflict

logger = logging.getLogger(__name__)

S = DeploymentStatus
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables the runtime and the image rely on; a deployment may not override them.
RESERVED_ENV = {"PATH", "PYTHONPATH", "VIRTUAL_ENV", "HOME"}
MAX_LOG_LINES = 5000

# --- Helpers ------------------------------------------------------------------------------------


def _snapshot(d: Deployment) -> dict:
    return {
        "name": d.name,
        "model": d.model.name,
        "version": d.version.version,
        "alias": d.alias,
        "follow_alias": d.follow_alias,
        "target": d.target,
        "replicas": d.replicas,
        "env_keys": d.env_keys,
        "status": d.status,
        "desired_state": d.desired_state,
        "generation": d.generation,
    }


def _enqueue_launch(deployment: Deployment) -> None:
    if deployment.target == Target.EXTERNAL:
        return  # the external tool launches; it reports through the events endpoint
    from deployments_app.tasks import deployment_launch_task

    transaction.on_commit(
        partial(deployment_launch_task.delay, deployment_id=deployment.pk, generation=deployment.generation)
    )


def _enqueue_halt(deployment: Deployment) -> None:
    from deployments_app.tasks import deployment_halt_task

    transaction.on_commit(partial(deployment_halt_task.delay, deployment_id=deployment.pk))


def _event(d: Deployment, status: str, message: str, actor=None) -> None:
    DeploymentEvent.objects.create(
        deployment=d,
        status=status,
        message=message[:5000],
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )


def _set_status(
    deployment_id: int,
    *,
    to: str,
    from_statuses: tuple[str, ...] | None = None,
    if_generation: int | None = None,
    actor=None,
    message: str = "",
    **fields: Any,
) -> Deployment | None:
    """Compare-and-set the status (and other fields) of a deployment; None when the row moved on.

    The row is locked, its status checked against ``from_statuses`` (and ``if_generation``: a
    newer rollout wins), then changed, with a DeploymentEvent and an audit record.
    """
    with transaction.atomic():
        d = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
        if d is None:
            return None
        if from_statuses is not None and d.status not in from_statuses:
            return None
        if if_generation is not None and d.generation != if_generation:
            return None
        if not d.can_transition_to(to):
            return None
        before = d.status
        d.status = to
        for key, value in fields.items():
            setattr(d, key, value)
        d.save()
        d = Deployment.objects.select_related("model", "version").get(pk=d.pk)
        if before != to or message:
            _event(d, to, message, actor)
            audit_record(
                actor=actor,
                action="deployment.status_changed",
                obj=d,
                before={"status": before},
                after={"status": to, "message": message[:500], "endpoint_url": d.endpoint_url},
            )
        return d


def _log(deployment_id: int, generation: int, source: str = "build"):
    """A log function for backends: stores lines and keeps the lease of the work alive."""
    state = {"count": 0, "beat": 0.0}

    def log(line: str) -> None:
        line = line.rstrip()[:4000]
        if state["count"] < MAX_LOG_LINES and line:
            DeploymentLogLine.objects.create(
                deployment_id=deployment_id, generation=generation, source=source, line=line
            )
            state["count"] += 1
        now = time.monotonic()
        if now - state["beat"] > 5:
            state["beat"] = now
            heartbeat(deployment_id=deployment_id, generation=generation)

    return log


class _LeaseKeeper:
    """Renews the lease of a launch from a thread while the worker lives.

    A build step can be silent for minutes (pip installing); the lease must not lapse while the
    worker is alive, and must lapse soon after it dies (then reconcile resumes the work).
    """

    def __init__(self, deployment_id: int, generation: int) -> None:
        import threading

        self.deployment_id, self.generation = deployment_id, generation
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{deployment_id}", daemon=True)

    def _run(self) -> None:
        from django.db import connection

        interval = max(1.0, settings.MODELYARD_DEPLOY_LEASE_SECONDS / 3)
        try:
            while not self._stop.wait(interval):
                heartbeat(deployment_id=self.deployment_id, generation=self.generation)
        except Exception:  # the launch itself reports errors; a lapsed lease is handled by reconcile
            logger.exception("lease renewal of deployment %s failed", self.deployment_id)
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def heartbeat(*, deployment_id: int, generation: int) -> None:
    """Extend the lease of the build/start in progress (only if we still own that generation)."""
    now = timezone.now()
    Deployment.objects.filter(pk=deployment_id, generation=generation, status__in=IN_PROGRESS).update(
        heartbeat_at=now, lease_until=now + timedelta(seconds=settings.MODELYARD_DEPLOY_LEASE_SECONDS)
    )


def _encrypt_env(env: dict[str, str]) -> str:
    return webhooks.encrypt_secret(json.dumps(env)) if env else ""


def deployment_env(deployment: Deployment) -> dict[str, str]:
    """The deployment's environment, decrypted (for the worker only; never shown back)."""
    if not deployment.env_encrypted:
        return {}
    return json.loads(webhooks.decrypt_secret(deployment.env_encrypted))


def _clean_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise ValidationError({"env": "Give an object of NAME: value strings."})
    if len(env) > 100:
        raise ValidationError({"env": "At most 100 variables."})
    clean = {}
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise ValidationError({"env": f"{key!r} is not a valid variable name (letters, digits, _)."})
        if key in RESERVED_ENV or key.startswith("MODELYARD_"):
            raise ValidationError({"env": f"{key} is set by the registry and cannot be overridden."})
        if not isinstance(value, str) or len(value) > 10_000 or "\x00" in value:
            raise ValidationError(
                {"env": f"The value of {key} must be a string of at most 10,000 characters."}
            )
        clean[key] = value
    return clean


def _resolve_version(model: RegisteredModel, *, version: int | None, alias: str | None) -> ModelVersion:
    if (version is None) == (not alias):
        raise ValidationError({"version": "Give exactly one of 'version' and 'alias'."})
    if alias:
        item = ModelAlias.objects.select_related("version").filter(model=model, alias=alias).first()
        if item is None:
            raise ValidationError({"alias": f"Model '{model.name}' has no alias '{alias}'."})
        chosen = item.version
    else:
        chosen = ModelVersion.objects.filter(model=model, version=version).first()
        if chosen is None:
            raise ValidationError({"version": f"Model '{model.name}' has no version {version}."})
    if chosen.status != VersionStatus.READY:
        raise ValidationError(
            {"version": f"Version {chosen.version} is {chosen.status}: only READY versions can be deployed."}
        )
    return chosen


def version_has_pickle(version: ModelVersion) -> bool:
    """True when serving ``version`` means unpickling (pickle/joblib files, or the scan found some)."""
    paths = version.files.values_list("path", flat=True)
    if any(path.lower().endswith(PICKLE_SUFFIXES) for path in paths):
        return True
    scan = Check.objects.filter(version=version, name="security_scan").first()
    return bool(scan and (scan.metrics or {}).get("pickle_files"))


def _pickle_gate(*, actor, version: ModelVersion, allow_pickle: bool) -> bool:
    """Whether the runtime gets ``--allow-pickle``; refuses a pickle without a passed scan.

    Pickle files run code when loaded, so they are served only after ``security_scan`` passed,
    or when an admin explicitly allows it (the request's ``allow_pickle``, audited with it).
    """
    if allow_pickle and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("Only administrators may allow pickle files without a passed security_scan.")
    if not version_has_pickle(version):
        return False
    scan = Check.objects.filter(version=version, name="security_scan").first()
    if scan is not None and scan.status == CheckStatus.PASSED:
        return True
    if allow_pickle:
        return True
    state = "has not run yet" if scan is None else scan.status
    summary = f": {scan.summary}" if scan is not None and scan.summary else ""
    raise Conflict(
        f"Version {version.version} of '{version.model.name}' contains pickle/joblib files and its "
        f"security_scan check {state}{summary}. Loading a pickle runs code, so it is served only "
        "after the scan passed (or when an admin allows it with allow_pickle).",
        field="version",
        code="pickle_refused",
    )


# --- Users' requests ----------------------------------------------------------------------------


@transaction.atomic
def deployment_request(
    *,
    actor,
    name: str,
    model: RegisteredModel,
    version: int | None = None,
    alias: str | None = None,
    target: str | None = None,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    follow_alias: bool = False,
    allow_pickle: bool = False,
) -> Deployment:
    """Ask for ``model`` (a version, or the version an alias points at) to be served as ``name``."""
    _require(actor, "deployments_app.add_deployment", model)
    target = target or settings.MODELYARD_DEPLOY_DEFAULT_TARGET
    if target not in Target.values or target not in settings.MODELYARD_DEPLOY_TARGETS:
        allowed = ", ".join(t for t in Target.values if t in settings.MODELYARD_DEPLOY_TARGETS)
        raise ValidationError({"target": f"'{target}' is not an enabled target; use one of: {allowed}."})
    if follow_alias and not alias:
        raise ValidationError({"follow_alias": "follow_alias needs an 'alias' to follow."})
    chosen = _resolve_version(model, version=version, alias=alias)
    pickle_ok = _pickle_gate(actor=actor, version=chosen, allow_pickle=allow_pickle)
    clean_env = _clean_env(env)
    deployment = Deployment(
        name=name,
        model=model,
        version=chosen,
        alias=alias or "",
        follow_alias=follow_alias,
        target=target,
        replicas=replicas,
        env_encrypted=_encrypt_env(clean_env),
        env_keys=sorted(clean_env),
        allow_pickle=pickle_ok,
        requested_by=actor,
        lease_until=None,
    )
    try:
        deployment.full_clean(exclude=["model", "version", "requested_by"], validate_unique=False)
    except ValidationError as exc:
        raise ValidationError(exc.message_dict) from exc
    if Deployment.objects.filter(name=name).exists():
        raise Conflict(f"A deployment named '{name}' already exists.", field="name")
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError as exc:
        raise Conflict(f"A deployment named '{name}' already exists.", field="name") from exc
    _event(deployment, S.QUEUED, f"requested {model.name} v{chosen.version} on {target}", actor)
    after = _snapshot(deployment)
    if allow_pickle and pickle_ok:
        after["allow_pickle"] = "allowed by an administrator"
    audit_record(actor=actor, action="deployment.requested", obj=deployment, after=after)
    _enqueue_launch(deployment)
    return deployment


def _locked(deployment: Deployment) -> Deployment:
    return Deployment.objects.select_for_update().select_related("model", "version").get(pk=deployment.pk)


@transaction.atomic
def deployment_stop(*, actor, deployment: Deployment) -> Deployment:
    """Stop serving: the instance is stopped by a worker (or by the external tool)."""
    _require(actor, "deployments_app.change_deployment", deployment)
    d = _locked(deployment)
    if d.status == S.STOPPED or (d.status == S.STOPPING and d.desired_state != DesiredState.RUNNING):
        return d
    before = _snapshot(d)
    d.desired_state = DesiredState.STOPPED
    d.save(update_fields=["desired_state", "updated_at"])
    audit_record(actor=actor, action="deployment.stop_requested", obj=d, before=before, after=_snapshot(d))
    d = _set_status(d.pk, to=S.STOPPING, actor=actor, message="stop requested", lease_until=_lease())
    if d.target != Target.EXTERNAL:
        _enqueue_halt(d)
    return d


def _lease():
    return timezone.now() + timedelta(seconds=settings.MODELYARD_DEPLOY_LEASE_SECONDS)


@transaction.atomic
def deployment_start(*, actor, deployment: Deployment) -> Deployment:
    """Serve a stopped or failed deployment again (a new generation of its current version)."""
    _require(actor, "deployments_app.change_deployment", deployment)
    d = _locked(deployment)
    if d.status not in (S.STOPPED, S.FAILED):
        raise Conflict(f"Deployment '{d.name}' is {d.status}; only stopped or failed ones can be started.")
    before = _snapshot(d)
    d.desired_state = DesiredState.RUNNING
    d.save(update_fields=["desired_state", "updated_at"])
    d = _set_status(
        d.pk,
        to=S.QUEUED,
        actor=actor,
        message="start requested",
        **_new_generation(d),
    )
    audit_record(actor=actor, action="deployment.start_requested", obj=d, before=before, after=_snapshot(d))
    _enqueue_launch(d)
    return d


def _new_generation(d: Deployment) -> dict:
    return {"generation": d.generation + 1, "error": "", "restarts": 0, "lease_until": None, "attempts": 0}


@transaction.atomic
def deployment_redeploy(
    *,
    actor,
    deployment: Deployment,
    version: int | None = None,
    alias: str | None = None,
    allow_pickle: bool = False,
    reason: str = "",
) -> Deployment:
    """Roll ``deployment`` to another version: the new instance starts, then takes over.

    With neither ``version`` nor ``alias``, the current alias (or version) is deployed again.
    ``actor=None`` is the registry itself following an alias the deployer chose to follow.
    """
    if actor is not None:
        _require(actor, "deployments_app.change_deployment", deployment)
    d = _locked(deployment)
    if d.desired_state != DesiredState.RUNNING or d.status in (S.STOPPING, S.STOPPED):
        raise Conflict(f"Deployment '{d.name}' is stopped; start it instead of redeploying.")
    if version is None and not alias:
        alias, version = (d.alias, None) if d.alias else (None, d.version.version)
    chosen = _resolve_version(d.model, version=version, alias=alias)
    pickle_ok = _pickle_gate(actor=actor, version=chosen, allow_pickle=allow_pickle)
    before = _snapshot(d)
    d.version, d.alias, d.allow_pickle = chosen, alias or "", pickle_ok
    if not alias:
        d.follow_alias = False
    d.save(update_fields=["version", "alias", "allow_pickle", "follow_alias", "updated_at"])
    d = _set_status(
        d.pk,
        to=S.QUEUED,
        actor=actor,
        message=reason or f"redeploy of v{chosen.version} requested",
        **_new_generation(d),
    )
    audit_record(
        actor=actor, action="deployment.redeploy_requested", obj=d, before=before, after=_snapshot(d)
    )
    _enqueue_launch(d)
    return d


@transaction.atomic
def deployment_delete(*, actor, deployment: Deployment) -> bool:
    """Delete a deployment; a live one is stopped first by a worker. True when deleted now."""
    _require(actor, "deployments_app.delete_deployment", deployment)
    d = _locked(deployment)
    if d.target == Target.EXTERNAL or (d.status in (S.STOPPED, S.FAILED) and not d.instance_id):
        audit_record(actor=actor, action="deployment.deleted", obj=d, before=_snapshot(d))
        d.delete()
        if deployment.target != Target.EXTERNAL:
            transaction.on_commit(partial(_cleanup, deployment.target, deployment.pk, d.generation))
        return True
    before = _snapshot(d)
    d.desired_state = DesiredState.DELETED
    d.save(update_fields=["desired_state", "updated_at"])
    audit_record(actor=actor, action="deployment.stop_requested", obj=d, before=before, after=_snapshot(d))
    d = _set_status(d.pk, to=S.STOPPING, actor=actor, message="delete requested", lease_until=_lease())
    _enqueue_halt(d)
    return False


def _cleanup(target: str, deployment_id: int, generations: int) -> None:
    try:
        get_backend(target).cleanup(deployment_id, generations)
    except Exception:
        logger.exception("cleanup of deployment %s (%s) failed", deployment_id, target)


EXTERNAL_STATUSES = (S.BUILDING, S.STARTING, S.RUNNING, S.FAILED, S.STOPPING, S.STOPPED)


def _clean_endpoint(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"endpoint_url": "Give an http(s) URL with a host."})
    return url.rstrip("/")


@transaction.atomic
def deployment_event_report(
    *, actor, deployment: Deployment, status: str, message: str = "", endpoint_url: str | None = None
) -> Deployment:
    """An external tool reports progress of an ``external`` deployment (status, endpoint)."""
    _require(actor, "deployments_app.change_deployment", deployment)
    if deployment.target != Target.EXTERNAL:
        raise Conflict(
            f"Deployment '{deployment.name}' runs on the {deployment.target} target, which the registry "
            "drives itself; only external deployments take reported events.",
            field="status",
        )
    if status not in EXTERNAL_STATUSES:
        raise ValidationError({"status": f"Report one of: {', '.join(EXTERNAL_STATUSES)}."})
    d = _locked(deployment)
    if not d.can_transition_to(status):
        raise Conflict(f"'{d.status}' cannot be followed by '{status}'.", field="status")
    fields: dict[str, Any] = {}
    if endpoint_url:
        fields["endpoint_url"] = _clean_endpoint(endpoint_url)
    if status == S.RUNNING:
        if not (endpoint_url or d.endpoint_url):
            raise ValidationError({"endpoint_url": "A running deployment needs its endpoint_url."})
        fields.update(started_at=timezone.now(), error="", desired_state=DesiredState.RUNNING)
    elif status == S.FAILED:
        fields.update(error=message, finished_at=timezone.now())
    elif status == S.STOPPED:
        fields.update(endpoint_url="", finished_at=timezone.now(), desired_state=DesiredState.STOPPED)
    updated = _set_status(d.pk, to=status, actor=actor, message=message or f"reported {status}", **fields)
    if updated is None:  # pragma: no cover - the row is locked above
        raise Conflict("The deployment changed concurrently; retry.")
    if status == S.STOPPED and d.desired_state == DesiredState.DELETED:
        audit_record(actor=actor, action="deployment.deleted", obj=updated, before=_snapshot(updated))
        updated.delete()
    return updated


def deployments_follow_alias(*, model_id: int, alias: str, actor_id: int | None = None) -> int:
    """After ``alias`` of a model moved: redeploy the deployments that follow it (a hook)."""
    # Most moves have no follower: a prepared one-row probe answers that (this runs after every
    # alias move, so it skips the ORM's compilation of the query above).
    probe = (
        f"SELECT 1 FROM {rawsql.table(Deployment)} WHERE model_id = %s AND alias = %s "  # noqa: S608
        "AND follow_alias = %s AND desired_state = %s AND status NOT IN (%s, %s) LIMIT 1"
    )
    values = [model_id, alias, True, DesiredState.RUNNING.value, S.STOPPING.value, S.STOPPED.value]
    if not rawsql.fetch(probe, values, prepared=True):
        return 0
    following = Deployment.objects.filter(
        model_id=model_id, alias=alias, follow_alias=True, desired_state=DesiredState.RUNNING
    ).exclude(status__in=[S.STOPPING, S.STOPPED])
    found = ModelAlias.objects.filter(model_id=model_id, alias=alias).select_related("version")[:1]
    moved = next(iter(found), None)
    count = 0
    for d in following:
        if moved is None or moved.version_id == d.version_id:
            continue  # alias deleted (keep serving what runs) or already on that version
        try:
            deployment_redeploy(
                actor=None,
                deployment=d,
                alias=alias,
                reason=f"alias '{alias}' moved to v{moved.version.version}",
            )
            count += 1
        except (Conflict, ValidationError) as exc:
            _set_status(d.pk, to=d.status, message=f"alias '{alias}' moved but not redeployed: {exc}")
    return count


# --- Worker steps -----------------------------------------------------------------------------


def _work_dir(d: Deployment) -> Path:
    path = settings.MODELYARD_DEPLOY_DIR / str(d.pk) / f"g{d.generation}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialize(d: Deployment, work_dir: Path) -> Path:
    """Copy the version's files from the artifact store into ``work_dir/model`` (once)."""
    from models_app import artifacts

    target = work_dir / "model"
    done = work_dir / "model.complete"
    if done.exists() and done.read_text() == d.version.manifest_digest:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    store = artifacts.get_store()
    for item in d.version.files.select_related("blob").order_by("path"):
        path = target / item.path  # validated on upload: relative, no '..'
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "wb") as out:
                for chunk in store.iter_bytes(item.blob_id):
                    out.write(chunk)
        except OSError as exc:
            raise TransientDeployError(f"reading {item.path} from the artifact store failed: {exc}") from exc
    done.write_text(d.version.manifest_digest)
    return target


def _spec(d: Deployment, work_dir: Path, model_dir: Path) -> LaunchSpec:
    return LaunchSpec(
        deployment_id=d.pk,
        name=d.name,
        generation=d.generation,
        model_dir=model_dir,
        work_dir=work_dir,
        allow_pickle=d.allow_pickle,
        env=deployment_env(d),
        replicas=d.replicas,
        model_name=d.model.name,
        version=d.version.version,
    )


def wait_ready(url: str, *, is_alive, timeout: float) -> None:
    """Poll ``GET {url}/v2/health/ready`` until 200; DeployError when the instance dies or stalls."""
    import urllib3

    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=2))
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = http.request("GET", url + "/v2/health/ready")
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except urllib3.exceptions.HTTPError as exc:
            last = type(exc).__name__
        if not is_alive():
            raise DeployError(f"the instance exited before it was ready ({last})")
        time.sleep(0.1)
    raise DeployError(f"the instance was not ready within {timeout:.0f} s ({last})")


def _claim(deployment_id: int, generation: int) -> Deployment | None:
    """Take the launch of ``generation``: queued, or in progress with an expired lease."""
    now = timezone.now()
    with transaction.atomic():
        d = Deployment.objects.select_for_update().filter(pk=deployment_id, generation=generation).first()
        if d is None or d.desired_state != DesiredState.RUNNING:
            return None
        stale = d.status in (S.BUILDING, S.STARTING) and (d.lease_until is None or d.lease_until < now)
        if d.status != S.QUEUED and not stale:
            return None
    return _set_status(
        deployment_id,
        to=S.BUILDING,
        if_generation=generation,
        from_statuses=(S.QUEUED, S.BUILDING, S.STARTING),
        message="resumed after a lost worker" if stale else "build started",
        lease_until=now + timedelta(seconds=settings.MODELYARD_DEPLOY_LEASE_SECONDS),
        heartbeat_at=now,
        attempts=d.attempts + 1,
    )


def deployment_launch(*, deployment_id: int, generation: int) -> None:
    """Build and start one generation, wait until it is ready, switch to it, stop the old one.

    The rollout is rolling: until the switch the previous instance keeps its ``endpoint_url``
    and serves the proxy; the switch is one compare-and-set, after which the old instance is
    drained for ``MODELYARD_DEPLOY_DRAIN_SECONDS`` and stopped.
    """
    d = _claim(deployment_id, generation)
    if d is None:
        return  # someone else has it, or it moved on (stopped, redeployed, deleted)
    with _LeaseKeeper(d.pk, generation):
        _launch(d, generation)


def _launch(d: Deployment, generation: int) -> None:
    deployment_id = d.pk
    log = _log(d.pk, generation)
    backend = get_backend(d.target)
    instance = None
    try:
        work_dir = _work_dir(d)
        model_dir = materialize(d, work_dir)
        spec = _spec(d, work_dir, model_dir)
        image = backend.build(spec, log)
        d = _set_status(
            d.pk,
            to=S.STARTING,
            if_generation=generation,
            from_statuses=(S.BUILDING,),
            message=f"built {image}" if image else "starting",
            image=image,
        )
        if d is None:
            return
        instance = backend.start(spec, image, log)
        log(f"waiting for {instance.endpoint_url}/v2/health/ready")
        wait_ready(
            instance.endpoint_url,
            is_alive=lambda: backend.is_alive(instance.instance_id),
            timeout=settings.MODELYARD_DEPLOY_READY_TIMEOUT_SECONDS,
        )
    except TransientDeployError:
        if instance is not None:
            backend.stop(instance.instance_id)
        raise  # the task retries with backoff; the lease lets reconcile pick it up otherwise
    except Exception as exc:
        if instance is not None:
            for line in backend.logs(instance.instance_id, tail=30):
                log(line)
            backend.stop(instance.instance_id)
        message = str(exc) if isinstance(exc, DeployError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, DeployError):
            logger.exception("deployment %s generation %s failed", deployment_id, generation)
        _set_status(
            deployment_id,
            to=S.FAILED,
            if_generation=generation,
            from_statuses=(S.BUILDING, S.STARTING),
            message=message[:5000],
            error=message,
            lease_until=None,
            finished_at=timezone.now(),
        )
        return
    old = Deployment.objects.get(pk=deployment_id)
    old_instance = old.instance_id
    switched = _set_status(
        deployment_id,
        to=S.RUNNING,
        if_generation=generation,
        from_statuses=(S.STARTING,),
        message=f"serving v{d.version.version} at {instance.endpoint_url}",
        endpoint_url=instance.endpoint_url,
        instance_id=instance.instance_id,
        error="",
        lease_until=None,
        started_at=timezone.now(),
        finished_at=None,
    )
    if switched is None:  # stopped or redeployed meanwhile: this instance is not wanted
        backend.stop(instance.instance_id)
        return
    if old_instance and old_instance != instance.instance_id:
        time.sleep(settings.MODELYARD_DEPLOY_DRAIN_SECONDS)  # requests already sent to it finish
        backend.stop(old_instance)
        if d.target == Target.DOCKER:
            _remove_old_images(d, keep=generation)


def _remove_old_images(d: Deployment, *, keep: int) -> None:
    from deployments_app.backends.docker import DockerBackend

    backend = DockerBackend()
    for gen in range(1, keep):
        backend.remove_image(f"modelyard-dep-{d.pk}:g{gen}")


def deployment_halt(*, deployment_id: int) -> None:
    """Stop the live instance of a stopping deployment; delete the row when that was asked."""
    d = Deployment.objects.filter(pk=deployment_id).select_related("model", "version").first()
    if d is None or d.status != S.STOPPING:
        return
    if d.target != Target.EXTERNAL and d.instance_id:
        get_backend(d.target).stop(d.instance_id)
    done = _set_status(
        deployment_id,
        to=S.STOPPED,
        from_statuses=(S.STOPPING,),
        message="stopped",
        endpoint_url="",
        instance_id="",
        lease_until=None,
        finished_at=timezone.now(),
    )
    if done is not None and done.desired_state == DesiredState.DELETED:
        # Clean up first: the row disappears last, when nothing of the deployment is left.
        _cleanup(done.target, deployment_id, done.generation)
        with transaction.atomic():
            audit_record(actor=None, action="deployment.deleted", obj=done, before=_snapshot(done))
            done.delete()


PREDICT_ENDPOINTS = frozenset({"infer", "invocations"})  # the runtime's prediction endpoints
_REQUESTS_LINE = re.compile(r"^modelyard_runtime_requests_total\{(?P<labels>[^}]*)\} (?P<n>[0-9.e+]+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def predictions_served(metrics_text: str) -> int:
    """Successful predictions counted in a runtime's Prometheus text (both protocols)."""
    total = 0
    for line in _REQUESTS_LINE.finditer(metrics_text):
        labels = dict(_LABEL.findall(line["labels"]))
        if labels.get("endpoint") in PREDICT_ENDPOINTS and labels.get("code", "").startswith("2"):
            total += int(float(line["n"]))
    return total


def deployment_usage_collect(*, deployment: Deployment) -> int:
    """Add what the live instance predicted since the last look to the model's usage counter.

    Read from the runtime's own ``/metrics`` (so direct and proxied predictions both count, and
    the proxy's hot path writes nothing). Compare-and-set on the last seen count: two reconcile
    passes never add the same predictions twice. Predictions an instance served after the last
    look and before it was replaced are not counted (the counter is approximate by that much).
    """
    import urllib3

    from models_app.services import usage_record

    if not deployment.endpoint_url:
        return 0
    try:
        response = urllib3.request(
            "GET",
            deployment.endpoint_url + "/metrics",
            retries=False,
            timeout=urllib3.Timeout(connect=1, read=2),
        )
    except urllib3.exceptions.HTTPError as exc:
        logger.info("no metrics from deployment %s: %s", deployment.pk, type(exc).__name__)
        return 0
    if response.status != 200:
        return 0
    served = predictions_served(response.data.decode("utf-8", "replace"))
    same_instance = deployment.predictions_generation == deployment.generation
    new = served - deployment.predictions_seen if same_instance else served
    if new < 0:  # the counter restarted (the process was restarted in place)
        new = served
    claimed = Deployment.objects.filter(
        pk=deployment.pk,
        predictions_seen=deployment.predictions_seen,
        predictions_generation=deployment.predictions_generation,
    ).update(predictions_seen=served, predictions_generation=deployment.generation)
    if claimed and new > 0:
        usage_record(model=deployment.model_id, kind="prediction", count=new)
    return new if claimed else 0


def deployments_reconcile() -> dict[str, int]:
    """Compare desired and observed state of every deployment, and act (Celery beat).

    - a build/start whose lease expired (its worker died) is enqueued again and resumed;
    - a queued deployment nobody picked up within a lease is enqueued again;
    - a running instance that died is restarted (a new generation), up to
      ``MODELYARD_DEPLOY_MAX_RESTARTS`` times, then marked failed;
    - a stop that did not finish is enqueued again.
    """
    from deployments_app.tasks import deployment_halt_task, deployment_launch_task

    now = timezone.now()
    counts = {"resumed": 0, "restarted": 0, "failed": 0, "halted": 0}
    lease = timedelta(seconds=settings.MODELYARD_DEPLOY_LEASE_SECONDS)
    stale = Deployment.objects.filter(desired_state=DesiredState.RUNNING).exclude(target=Target.EXTERNAL)
    stale = stale.filter(
        Q(status__in=[S.BUILDING, S.STARTING], lease_until__lt=now)
        | Q(status=S.QUEUED, updated_at__lt=now - lease)
    )
    for d in stale:
        if d.status == S.QUEUED:
            Deployment.objects.filter(pk=d.pk, status=S.QUEUED).update(updated_at=now)
        deployment_launch_task.delay(deployment_id=d.pk, generation=d.generation)
        counts["resumed"] += 1
    stuck_stops = Deployment.objects.filter(status=S.STOPPING).exclude(target=Target.EXTERNAL)
    for d in stuck_stops.filter(Q(lease_until__lt=now) | Q(lease_until__isnull=True)):
        Deployment.objects.filter(pk=d.pk, status=S.STOPPING).update(lease_until=now + lease)
        deployment_halt_task.delay(deployment_id=d.pk)
        counts["halted"] += 1
    running = Deployment.objects.filter(status=S.RUNNING, desired_state=DesiredState.RUNNING).exclude(
        target=Target.EXTERNAL
    )
    backends: dict[str, Any] = {}  # one engine client per target for the whole pass
    for d in running:
        try:
            backend = backends.get(d.target) or backends.setdefault(d.target, get_backend(d.target))
            alive = backend.is_alive(d.instance_id)
        except DeployError as exc:
            logger.warning("cannot observe deployment %s: %s", d.pk, exc)
            continue
        if alive:
            Deployment.objects.filter(pk=d.pk, status=S.RUNNING).update(heartbeat_at=now)
            deployment_usage_collect(deployment=d)
            continue
        if d.restarts < settings.MODELYARD_DEPLOY_MAX_RESTARTS:
            restarted = _set_status(
                d.pk,
                to=S.QUEUED,
                from_statuses=(S.RUNNING,),
                if_generation=d.generation,
                message=f"instance {d.instance_id[:12]} is gone; restarting ({d.restarts + 1})",
                generation=d.generation + 1,
                endpoint_url="",
                instance_id="",
                restarts=d.restarts + 1,
            )
            if restarted is not None:
                with contextlib.suppress(DeployError):  # remove the dead container, if any
                    backend.stop(d.instance_id)
                deployment_launch_task.delay(deployment_id=d.pk, generation=restarted.generation)
                counts["restarted"] += 1
        else:
            _set_status(
                d.pk,
                to=S.FAILED,
                from_statuses=(S.RUNNING,),
                if_generation=d.generation,
                message=f"instance died {d.restarts + 1} times; giving up",
                error="the instance kept dying; see the log",
                endpoint_url="",
                instance_id="",
                finished_at=now,
            )
            counts["failed"] += 1
    return counts
