"""Writes to the catalog. Every function checks the actor's permission, runs in one
transaction and records an audit event with the state before and after."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from models_app import artifacts
from models_app.auth_backends import remember_team_roles
from models_app.choices import TeamRole, TokenScope, UploadState, UsageKind, VersionStatus, Visibility
from models_app.models import (
    AccessToken,
    AliasHistory,
    AuditEvent,
    Blob,
    ModelAlias,
    ModelTag,
    ModelUsage,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    TeamMembership,
    UploadSession,
    VersionFile,
    VersionTag,
    Webhook,
)
from models_app.models.access import TOKEN_PREFIX
from registry_project import rawsql, request_context
from registry_project.errors import Conflict

logger = logging.getLogger(__name__)

# --- Audit ---------------------------------------------------------------------------------


def _model_of(obj: Any) -> RegisteredModel | None:
    if isinstance(obj, RegisteredModel):
        return obj
    model = getattr(obj, "model", None)
    return model if isinstance(model, RegisteredModel) else None


def _audit_event(*, actor, action: str, obj: Any, before, after, model) -> AuditEvent:
    ctx = request_context.current()
    return AuditEvent(
        actor=actor,
        actor_username=actor.get_username() if actor else "",
        token_id=ctx.token_id,
        client_ip=ctx.client_ip,
        request_id=ctx.request_id,
        action=action,
        object_type=type(obj).__name__,
        object_id=str(getattr(obj, "pk", "") or ""),
        object_repr=str(obj)[:300],
        model_name=model.name if model else "",
        team_id=model.team_id if model else None,
        before=before,
        after=after,
    )


def audit_record(
    *,
    actor,
    action: str,
    obj: Any,
    before: dict | None = None,
    after: dict | None = None,
    model: RegisteredModel | None = None,
) -> AuditEvent:
    """Append an audit event for ``obj``. Call it inside the transaction of the change."""
    return audit_entries(actor=actor, obj=obj, entries=[(action, before, after)], model=model)[0]


def audit_records(
    *, actor, action: str, obj: Any, changes: list[tuple[dict | None, dict | None]]
) -> list[AuditEvent]:
    """``audit_record`` for several ``(before, after)`` changes of one object, in one insert."""
    return audit_entries(actor=actor, obj=obj, entries=[(action, before, after) for before, after in changes])


def _webhook_active_sql() -> str:
    """Returned with each audit row: whether any webhook is active. The event outbox is written
    only then, and most installations have none, so the question costs no round trip of its own."""
    return f"EXISTS (SELECT 1 FROM {rawsql.table(Webhook)} WHERE active)"  # noqa: S608


def audit_entries(
    *,
    actor,
    obj: Any,
    entries: list[tuple[str, dict | None, dict | None]],
    model: RegisteredModel | None = None,
) -> list[AuditEvent]:
    """``audit_record`` for several ``(action, before, after)`` changes of one object, in order
    and in one insert; the changes that are events go to the outbox as well."""
    actor = actor if getattr(actor, "is_authenticated", False) else None
    model = model or _model_of(obj)
    events = [
        _audit_event(actor=actor, action=action, obj=obj, before=before, after=after, model=model)
        for action, before, after in entries
    ]
    if any(rawsql.inserter(AuditEvent, _webhook_active_sql()).insert(events)):
        for action, before, after in entries:
            _emit_event_for(action, obj=obj, model=model, actor=actor, before=before, after=after)
    return events


def _emit_event_for(action: str, *, obj: Any, model, actor, before: dict | None, after: dict | None) -> None:
    """Audited changes that subscribers care about also go to the event outbox (same transaction)."""
    from models_app.services_events import AUDIT_EVENTS, event_emit

    event_type = AUDIT_EVENTS.get(action)
    if event_type is None:
        return
    if event_type == "check.completed" and (after or {}).get("status") not in ("passed", "failed"):
        return
    version = obj if isinstance(obj, ModelVersion) else getattr(obj, "version", None)
    payload = {
        "model": model.name if model else None,
        "version": version.version if isinstance(version, ModelVersion) else None,
        "actor": actor.get_username() if actor else None,
        "before": before,
        "after": after,
    }
    event_emit(type=event_type, model=model, payload=payload)


def _require(actor, perm: str, obj: Any = None) -> None:
    if not actor.has_perm(perm, obj):
        raise PermissionDenied(f"You do not have the '{perm.split('.')[-1]}' permission on {obj}.")


def _snapshot_model(model: RegisteredModel) -> dict:
    return {
        "name": model.name,
        "description": model.description,
        "team": model.team.name,
        "visibility": model.visibility,
        # The card can be long: the audit log keeps its size and digest, not the text.
        "card": {"length": len(model.card), "sha256": hashlib.sha256(model.card.encode()).hexdigest()},
    }


def _snapshot_version(version: ModelVersion) -> dict:
    return {
        "version": version.version,
        "status": version.status,
        "description": version.description,
        "source": version.source,
    }


def _full_clean(obj: Any, exclude: list[str] | None = None) -> None:
    # validate_unique would run a query per constraint; the database enforces uniqueness and
    # the services translate those violations into 409s themselves.
    obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)


# --- Registered models ----------------------------------------------------------------------


def _ensure_name_free(name: str, *, exclude_pk: int | None = None) -> None:
    clash = RegisteredModel.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise Conflict(f"A model named '{name}' already exists (names are case-insensitive).", field="name")


@transaction.atomic
def registered_model_create(
    *,
    actor,
    name: str,
    team: Group,
    description: str = "",
    visibility: str = Visibility.INTERNAL,
    tags: dict[str, str] | None = None,
    card: str = "",
) -> RegisteredModel:
    """Register a new model owned by ``team``; the actor must be a contributor of that team."""
    _require(actor, "models_app.add_registeredmodel", team)
    model = RegisteredModel(
        name=name, team=team, description=description, card=card, visibility=visibility, created_by=actor
    )
    _full_clean(model)
    _ensure_name_free(name)
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError as exc:  # a concurrent create of the same name won
        raise Conflict(f"A model named '{name}' already exists.", field="name") from exc
    for key, value in (tags or {}).items():
        _tag_save(ModelTag(model=model, key=key, value=value))
    audit_record(actor=actor, action="model.created", obj=model, after=_snapshot_model(model))
    return model


@transaction.atomic
def registered_model_update(*, actor, model: RegisteredModel, **changes: Any) -> RegisteredModel:
    """Change name, description, model card, visibility or owning team.

    Moving a model to another team needs the right to create models in that team as well.
    """
    _require(actor, "models_app.change_registeredmodel", model)
    allowed = {"name", "description", "card", "visibility", "team"}
    if unknown := set(changes) - allowed:
        raise ValidationError({key: "This field cannot be changed." for key in unknown})
    model = RegisteredModel.objects.select_for_update().select_related("team").get(pk=model.pk)
    before = _snapshot_model(model)
    if "team" in changes and changes["team"].pk != model.team_id:
        _require(actor, "models_app.add_registeredmodel", changes["team"])
    for field, value in changes.items():
        setattr(model, field, value)
    _full_clean(model)
    if "name" in changes:
        _ensure_name_free(model.name, exclude_pk=model.pk)
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError as exc:
        raise Conflict(f"A model named '{model.name}' already exists.", field="name") from exc
    after = _snapshot_model(model)
    if after != before:
        audit_record(actor=actor, action="model.updated", obj=model, before=before, after=after)
    return model


@transaction.atomic
def registered_model_delete(*, actor, model: RegisteredModel) -> None:
    """Delete a model with its versions, tags and aliases. Stored blobs are left to ``gc_blobs``."""
    _require(actor, "models_app.delete_registeredmodel", model)
    _refuse_while_deployed(model.deployments, what=f"Model '{model.name}'")
    audit_record(actor=actor, action="model.deleted", obj=model, before=_snapshot_model(model))
    _abort_uploads_after_commit(UploadSession.objects.filter(version__model=model))
    model.delete()


# --- Usage ---------------------------------------------------------------------------------


def usage_record(*, model: RegisteredModel | int, kind: str, count: int = 1) -> None:
    """Count ``count`` uses of ``model`` today: ``"download"`` (file API) or ``"prediction"``.

    Not audited (it is a counter, not a change). One upsert, safe under concurrency: the first
    use of the day inserts the row, later ones add to it in the database (no read-modify-write).
    """
    if kind not in UsageKind.values:
        raise ValidationError(
            {"kind": f"Unknown usage kind '{kind}' (one of {', '.join(UsageKind.values)})."}
        )
    if count < 1:
        raise ValidationError({"count": "Count at least one use."})
    model_id = model if isinstance(model, int) else model.pk
    day = timezone.localdate()
    with transaction.atomic():
        updated = ModelUsage.objects.filter(model_id=model_id, kind=kind, day=day).update(
            count=F("count") + count
        )
        if updated:
            return
        try:
            with transaction.atomic():
                ModelUsage.objects.create(model_id=model_id, kind=kind, day=day, count=count)
        except IntegrityError:  # a concurrent first use of the day inserted it: add to that row
            ModelUsage.objects.filter(model_id=model_id, kind=kind, day=day).update(count=F("count") + count)


# --- Versions -------------------------------------------------------------------------------


@transaction.atomic
def model_version_create(
    *,
    actor,
    model: RegisteredModel,
    description: str = "",
    source: str = "",
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Create the next version of ``model``, PENDING until its files are finalized.

    The model row is locked while the number is taken, so concurrent creations get 1, 2, 3…
    with no gap and no duplicate; a rolled-back creation gives its number back. ``model`` gets
    the locked row's number, name, team and visibility.
    """
    _require(actor, "models_app.add_modelversion", model)
    version = ModelVersion(model=model, version=1, description=description, source=source, created_by=actor)
    _full_clean(version, exclude=["model", "version", "created_by"])
    _version_insert(version, tags)
    audit_record(actor=actor, action="version.created", obj=version, after=_snapshot_version(version))
    return version


def _version_insert(version: ModelVersion, tags: dict[str, str] | None) -> None:
    """Give ``version`` the next number of its model and insert it with ``tags``.

    One statement takes the model row's lock and the number (it was a locking read, then an
    update); ``version.model`` gets the locked row's number, name, team and visibility.
    """
    model = version.model
    now = timezone.now()
    taken = rawsql.fetch(
        f"UPDATE {rawsql.table(RegisteredModel)} SET last_version_number = last_version_number + 1, "  # noqa: S608
        "updated_at = %s WHERE id = %s RETURNING last_version_number, name, team_id, visibility",
        [connection.ops.adapt_datetimefield_value(now), model.pk],  # as the ORM stores it (SQLite: UTC text)
    )
    if not taken:  # deleted since the caller read it
        raise RegisteredModel.DoesNotExist(f"Registered model '{model.name}' no longer exists.")
    [(model.last_version_number, model.name, model.team_id, model.visibility)] = taken
    model.updated_at = now
    version.version = model.last_version_number
    rawsql.inserter(ModelVersion).insert([version])
    for key, value in (tags or {}).items():
        _tag_save(VersionTag(version=version, key=key, value=value))


@transaction.atomic
def model_version_update(*, actor, version: ModelVersion, **changes: Any) -> ModelVersion:
    """Change a version's description (always) or source (only while PENDING)."""
    _require(actor, "models_app.change_modelversion", version)
    if unknown := set(changes) - {"description", "source"}:
        raise ValidationError({key: "This field cannot be changed." for key in unknown})
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    if "source" in changes and changes["source"] != version.source and version.is_frozen:
        raise Conflict(
            f"Version {version.version} is {version.status}: its source can no longer change.",
            field="source",
            code="version_frozen",
        )
    before = _snapshot_version(version)
    for field, value in changes.items():
        setattr(version, field, value)
    _full_clean(version, exclude=["model"])
    version.save()
    after = _snapshot_version(version)
    if after != before:
        audit_record(actor=actor, action="version.updated", obj=version, before=before, after=after)
    return version


@transaction.atomic
def model_version_delete(*, actor, version: ModelVersion) -> None:
    """Delete a version; aliases pointing at it go with it. Its number is never given out again."""
    _require(actor, "models_app.delete_modelversion", version)
    _refuse_while_deployed(version.deployments, what=f"Version {version.version} of '{version.model.name}'")
    audit_record(actor=actor, action="version.deleted", obj=version, before=_snapshot_version(version))
    _abort_uploads_after_commit(UploadSession.objects.filter(version=version))
    version.delete()


def _refuse_while_deployed(deployments, *, what: str) -> None:
    """A model or version that deployments serve (or remember) is not deleted under them: 409."""
    names = sorted(deployments.values_list("name", flat=True)[:5])
    if names:
        raise Conflict(
            f"{what} has deployments ({', '.join(names)}): delete them first.", code="has_deployments"
        )


def _abort_uploads_after_commit(sessions) -> None:
    """Release the parts of open uploads whose rows are about to be deleted with their version.

    Done after commit: the rows (and with them ``gc_blobs``' knowledge of the parts) go away in
    this transaction, so a rollback must leave the parts in place.
    """
    pending = [(s.staging_key, s.backend_upload_id) for s in sessions.filter(state=UploadState.OPEN)]
    if not pending:
        return

    def abort() -> None:
        store = artifacts.get_store()
        for staging_key, backend_upload_id in pending:
            try:
                store.parts_abort(staging_key, backend_upload_id)
            except Exception:  # best effort: a bucket lifecycle rule catches what is left
                logger.warning("could not abort upload parts at %s", staging_key, exc_info=True)

    transaction.on_commit(abort)


# --- Tags -----------------------------------------------------------------------------------


def _tag_save(tag: ModelTag | VersionTag) -> None:
    _full_clean(tag, exclude=["model", "version"])
    tag.save()


@transaction.atomic
def model_tag_set(*, actor, model: RegisteredModel, key: str, value: str) -> ModelTag:
    """Set (create or replace) a tag on a model."""
    _require(actor, "models_app.change_registeredmodel", model)
    tag = ModelTag.objects.select_for_update().filter(model=model, key=key).first()
    before = {key: tag.value} if tag else None
    if tag is None:
        tag = ModelTag(model=model, key=key)
    tag.value = value
    _tag_save(tag)
    RegisteredModel.objects.filter(pk=model.pk).update(updated_at=timezone.now())
    audit_record(actor=actor, action="model.tag_set", obj=model, before=before, after={key: value})
    return tag


@transaction.atomic
def model_tag_delete(*, actor, model: RegisteredModel, key: str) -> None:
    _require(actor, "models_app.change_registeredmodel", model)
    tag = ModelTag.objects.filter(model=model, key=key).first()
    if tag is None:
        raise ModelTag.DoesNotExist(f"Model '{model.name}' has no tag '{key}'.")
    tag.delete()
    audit_record(actor=actor, action="model.tag_deleted", obj=model, before={key: tag.value})


@transaction.atomic
def version_tag_set(*, actor, version: ModelVersion, key: str, value: str) -> VersionTag:
    """Set a tag on a version. Allowed on READY versions too: tags are not part of the files."""
    _require(actor, "models_app.change_modelversion", version)
    tag = VersionTag.objects.select_for_update().filter(version=version, key=key).first()
    before = {key: tag.value} if tag else None
    if tag is None:
        tag = VersionTag(version=version, key=key)
    tag.value = value
    _tag_save(tag)
    audit_record(actor=actor, action="version.tag_set", obj=version, before=before, after={key: value})
    return tag


@transaction.atomic
def version_tag_delete(*, actor, version: ModelVersion, key: str) -> None:
    _require(actor, "models_app.change_modelversion", version)
    tag = VersionTag.objects.filter(version=version, key=key).first()
    if tag is None:
        raise VersionTag.DoesNotExist(f"Version {version.version} has no tag '{key}'.")
    tag.delete()
    audit_record(actor=actor, action="version.tag_deleted", obj=version, before={key: tag.value})


# --- Aliases --------------------------------------------------------------------------------


class _Statements:
    """The hottest writes' lookups, hand-written (see ``registry_project.rawsql``): every alias
    move reads the model's policy and locks the alias row, every file attach and finalize locks
    its version, every attach or registration share-locks its blobs; compiling those ORM queries
    cost more than the database's answers."""

    def __init__(self) -> None:
        self.policy = rawsql.ModelColumns(PromotionPolicy, "p")
        self.policy_sql = (
            f"SELECT {self.policy.sql} FROM {rawsql.table(PromotionPolicy)} p WHERE p.model_id = %s"  # noqa: S608
        )
        self.alias = rawsql.ModelColumns(ModelAlias, "a")
        self.alias_move_sql = (
            f"UPDATE {rawsql.table(ModelAlias)} SET version_id = %s, updated_by_id = %s, "  # noqa: S608
            "updated_at = %s WHERE id = %s"
        )
        self.version = rawsql.ModelColumns(ModelVersion, "v")
        self.model = rawsql.ModelColumns(RegisteredModel, "m")
        self.blob = rawsql.ModelColumns(Blob, "b")
        # PostgreSQL only (``_blobs_share_locked``); digests are hex, so the array literal is safe.
        self.blobs_sql = (
            f"SELECT {self.blob.sql} FROM {rawsql.table(Blob)} b "  # noqa: S608
            "WHERE b.sha256 = ANY(%s::varchar[]) ORDER BY b.sha256 FOR KEY SHARE"
        )
        lock_a = lock_v = ""
        if connection.features.has_select_for_update:  # SQLite: the write lock of the transaction
            of = connection.features.has_select_for_update_of
            lock_a, lock_v = (" FOR UPDATE OF a", " FOR UPDATE OF v") if of else (" FOR UPDATE",) * 2
        self.alias_sql = (
            f"SELECT {self.alias.sql}, {self.version.sql} FROM {rawsql.table(ModelAlias)} a "  # noqa: S608
            f"JOIN {rawsql.table(ModelVersion)} v ON v.id = a.version_id "
            f"WHERE a.model_id = %s AND a.alias = %s{lock_a}"
        )
        # OF v: the join would lock the model's row too, and every upload or attach to any
        # version of one model would queue behind the others.
        self.version_sql = (
            f"SELECT {self.version.sql}, {self.model.sql} FROM {rawsql.table(ModelVersion)} v "  # noqa: S608
            f"JOIN {rawsql.table(RegisteredModel)} m ON m.id = v.model_id WHERE v.id = %s{lock_v}"
        )


_statements = cache(_Statements)


def policy_get(*, model: RegisteredModel) -> PromotionPolicy:
    """The model's promotion policy: its stored row, or (never changed yet) an unsaved one with
    ``MODELYARD_POLICY_DEFAULTS``. Reads never write; ``policy_update`` stores the first change."""
    return _policy_of(model, rawsql.fetch(_statements().policy_sql, [model.pk], prepared=True))


def _policy_of(model: RegisteredModel, rows: list[tuple]) -> PromotionPolicy:
    sql = _statements()
    policy = sql.policy.build(rows[0]) if rows else PromotionPolicy(model_id=model.pk)
    policy.model = model
    return policy


def _alias_locked(model: RegisteredModel, alias: str) -> ModelAlias | None:
    """The alias row, locked until the transaction ends (its version loaded), or None."""
    return _alias_of(model, rawsql.fetch(_statements().alias_sql, [model.pk, alias], prepared=True))


def _alias_of(model: RegisteredModel, rows: list[tuple]) -> ModelAlias | None:
    if not rows:
        return None
    sql = _statements()
    existing = sql.alias.build(rows[0])
    existing.version = sql.version.build(rows[0], sql.alias.width)
    existing.model = model  # the audit record names it: no second read
    return existing


def _alias_locked_and_policy(model: RegisteredModel, alias: str) -> tuple[ModelAlias | None, PromotionPolicy]:
    """``_alias_locked`` and ``policy_get`` in one round trip (they do not depend on each other)."""
    sql = _statements()
    alias_rows, policy_rows = rawsql.fetch_each(
        [(sql.alias_sql, [model.pk, alias]), (sql.policy_sql, [model.pk])], prepared=True
    )
    return _alias_of(model, alias_rows), _policy_of(model, policy_rows)


def _alias_insert(item: ModelAlias) -> bool:
    """Insert a new alias row; False if a concurrent request created the same alias first.

    ``ON CONFLICT DO NOTHING`` instead of catching the IntegrityError, which needs a savepoint
    (two more round trips on every first use of an alias). The insert waits on the unique index
    until the other transaction ends, so its row is committed (and lockable) when this returns.
    """
    rows = rawsql.fetch(
        f"INSERT INTO {rawsql.table(ModelAlias)} (model_id, alias, version_id, updated_by_id, updated_at) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_id, alias) DO NOTHING RETURNING id",
        [
            item.model_id,
            item.alias,
            item.version_id,
            item.updated_by_id,
            connection.ops.adapt_datetimefield_value(item.updated_at),
        ],
    )
    if not rows:
        return False
    item.pk = rows[0][0]
    item._state.adding, item._state.db = False, connection.alias
    return True


def _alias_point(item: ModelAlias, version: ModelVersion, actor) -> None:
    """Move the locked alias row ``item`` to ``version`` (its name, already valid, stays)."""
    item.version, item.updated_by, item.updated_at = version, actor, timezone.now()
    rawsql.execute(
        _statements().alias_move_sql,
        [version.pk, item.updated_by_id, connection.ops.adapt_datetimefield_value(item.updated_at), item.pk],
        prepared=True,
    )


_UNSET: Any = object()


def alias_move(
    *,
    model: RegisteredModel,
    alias: str,
    version: ModelVersion | None,
    actor,
    reason: str = "",
    promotion=None,
    existing: ModelAlias | None = _UNSET,
    may_replace: Callable[[], None] | None = None,
) -> ModelAlias | None:
    """Point ``alias`` at ``version`` (delete it when None), recording the move in the alias history.

    Callers check permissions: the alias API below, and approved promotions. ``existing`` is the
    alias row if the caller has already locked it (``_alias_locked``). ``may_replace`` raises
    unless the caller may also move an existing alias: it runs when a concurrent request
    created the alias this one was about to create.
    """
    if existing is _UNSET:
        existing = _alias_locked(model, alias)
    from_version = existing.version.version if existing else None
    if version is None:
        if existing is None:
            raise ModelAlias.DoesNotExist(f"Model '{model.name}' has no alias '{alias}'.")
        existing.delete()
        item = None
    elif existing is not None:  # a move: the locked row changes, nothing can clash
        item = existing
        _alias_point(item, version, actor)
    else:
        item = ModelAlias(
            model=model, alias=alias, version=version, updated_by=actor, updated_at=timezone.now()
        )
        _full_clean(item, exclude=["model", "version", "updated_by"])  # the actor is the caller
        if not _alias_insert(item):
            # A concurrent first use committed while this insert waited: move its row instead,
            # as if the two requests had come one after the other (the last one wins).
            existing = _alias_locked(model, alias)
            if existing is None:  # and it was deleted again since
                raise Conflict(f"Alias '{alias}' changed concurrently; retry.", field="alias")
            if may_replace is not None:
                may_replace()
            from_version = existing.version.version
            item = existing
            _alias_point(item, version, actor)
    history = AliasHistory(
        model=model,
        alias=alias,
        from_version=from_version,
        to_version=version.version if version else None,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason,
        promotion=promotion,
    )
    rawsql.inserter(AliasHistory).insert([history])
    audit_record(
        actor=actor,
        action="alias.set" if version else "alias.deleted",
        obj=item or existing,
        before={"alias": alias, "version": from_version} if existing else None,
        after={"alias": alias, "version": version.version} if version else None,
        model=model,
    )
    transaction.on_commit(
        partial(
            alias_moved_hooks_run,
            model_id=model.pk,
            alias=alias,
            actor_id=actor.pk if getattr(actor, "is_authenticated", False) else None,
        )
    )
    return item


def alias_moved_hooks_run(*, model_id: int, alias: str, actor_id: int | None) -> None:
    """Call each hook of ``MODELYARD_ALIAS_MOVED_HOOKS`` after an alias move committed.

    Other apps follow aliases this way (deployments with ``follow_alias`` redeploy); a failing
    hook is logged and never undoes the move, which is already committed.
    """
    from django.utils.module_loading import import_string

    for dotted in getattr(settings, "MODELYARD_ALIAS_MOVED_HOOKS", []):
        try:
            import_string(dotted)(model_id=model_id, alias=alias, actor_id=actor_id)
        except Exception:
            logger.exception("alias-moved hook %s failed for model %s alias %s", dotted, model_id, alias)


def _require_alias_change(
    actor, model: RegisteredModel, alias: str, perm: str, policy: PromotionPolicy
) -> None:
    _require(actor, perm, model)
    if alias in policy.protected_aliases and not actor.is_superuser:
        raise PermissionDenied(
            f"'{alias}' is a protected alias: it moves only through an approved promotion or by an admin."
        )


@transaction.atomic
def model_alias_set(
    *, actor, model: RegisteredModel, alias: str, version: ModelVersion, reason: str = ""
) -> ModelAlias:
    """Point ``alias`` at ``version`` (creating or moving it)."""
    if version.model_id != model.pk:
        raise ValidationError({"version": f"Version {version.version} does not belong to '{model.name}'."})
    existing, policy = _alias_locked_and_policy(model, alias)
    _require_alias_change(
        actor,
        model,
        alias,
        "models_app.change_modelalias" if existing else "models_app.add_modelalias",
        policy,
    )
    return alias_move(
        model=model,
        alias=alias,
        version=version,
        actor=actor,
        reason=reason,
        existing=existing,
        may_replace=partial(_require, actor, "models_app.change_modelalias", model),
    )


@transaction.atomic
def model_alias_delete(*, actor, model: RegisteredModel, alias: str, reason: str = "") -> None:
    existing, policy = _alias_locked_and_policy(model, alias)
    _require_alias_change(actor, model, alias, "models_app.delete_modelalias", policy)
    alias_move(model=model, alias=alias, version=None, actor=actor, reason=reason, existing=existing)


# --- Access tokens --------------------------------------------------------------------------


def _clean_scopes(scopes: list[str]) -> list[str]:
    valid = set(TokenScope.values)
    if not scopes:
        raise ValidationError({"scopes": "Give at least one scope: read, write, admin or predict."})
    if bad := [s for s in scopes if s not in valid]:
        raise ValidationError(
            {"scopes": f"Unknown scope(s): {', '.join(map(str, bad))}. Use read, write, admin, predict."}
        )
    return sorted(set(scopes), key=TokenScope.values.index)


@transaction.atomic
def access_token_create(
    *, actor, user, name: str, scopes: list[str], expires_in_days: int | None = None
) -> tuple[AccessToken, str]:
    """Create a token for ``user`` and return it with its secret, which is never stored.

    Users create their own tokens; only superusers create tokens for others. A token may not
    carry the ``admin`` scope for a user who is not staff.
    """
    if actor.pk != user.pk and not actor.is_superuser:
        raise PermissionDenied("Only administrators can create tokens for other users.")
    scopes = _clean_scopes(scopes)
    if TokenScope.ADMIN in scopes and not (user.is_staff or user.is_superuser):
        raise ValidationError({"scopes": "The 'admin' scope is only for administrators."})
    days = settings.MODELYARD_TOKEN_DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= settings.MODELYARD_TOKEN_MAX_DAYS:
        raise ValidationError(
            {"expires_in_days": f"Choose between 1 and {settings.MODELYARD_TOKEN_MAX_DAYS} days."}
        )
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AccessToken(
        user=user,
        name=name,
        prefix=raw[:12],
        digest=AccessToken.digest_of(raw),
        scopes=scopes,
        expires_at=timezone.now() + timedelta(days=days),
    )
    _full_clean(token)
    token.save()
    audit_record(
        actor=actor,
        action="token.created",
        obj=token,
        after={
            "name": name,
            "user": user.get_username(),
            "scopes": scopes,
            "expires_at": token.expires_at.isoformat(),
        },
    )
    return token, raw


@transaction.atomic
def access_token_revoke(*, actor, token: AccessToken) -> AccessToken:
    """Revoke a token now. Revoking twice is harmless."""
    if actor.pk != token.user_id and not actor.is_superuser:
        raise PermissionDenied("You can only revoke your own tokens.")
    updated = AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db()
    if updated:
        audit_record(actor=actor, action="token.revoked", obj=token, before={"name": token.name})
    return token


class _TokenLookup:
    """The token lookup of every API call, hand-written (see ``registry_project.rawsql``): the
    token, its user and the user's team roles in one query, instead of a compiled ORM query for
    the token and another for the roles."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        self.token = rawsql.ModelColumns(AccessToken, "t")
        self.user = rawsql.ModelColumns(user_model, "u")
        self.sql = (
            f"SELECT {self.token.sql}, {self.user.sql}, m.team_id, m.role "  # noqa: S608 - names only
            f"FROM {rawsql.table(AccessToken)} t "
            f"JOIN {rawsql.table(user_model)} u ON u.id = t.user_id "
            f"LEFT JOIN {rawsql.table(TeamMembership)} m ON m.user_id = t.user_id "
            "WHERE t.digest = %s"
        )

    def __call__(self, digest: str) -> AccessToken | None:
        rows = rawsql.fetch(self.sql, [digest], prepared=True)
        if not rows:
            return None
        token = self.token.build(rows[0])
        token.user = self.user.build(rows[0], self.token.width)
        roles_at = self.token.width + self.user.width
        remember_team_roles(token.user, {row[roles_at]: row[roles_at + 1] for row in rows if row[roles_at]})
        return token


_token_lookup = cache(_TokenLookup)  # built once, when the apps are loaded


def access_token_authenticate(raw: str) -> AccessToken | None:
    """Return the active token matching ``raw`` (with its user and the user's team roles loaded),
    marking it used at most once a minute."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = _token_lookup()(AccessToken.digest_of(raw))
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# --- Files and blobs ------------------------------------------------------------------------


def _lock_pending_version(
    version: ModelVersion, frozen: str = "its files can no longer change"
) -> ModelVersion:
    """``version`` read again with its model and locked until the transaction ends; 409 with
    ``frozen`` unless it is still PENDING."""
    sql = _statements()
    rows = rawsql.fetch(sql.version_sql, [version.pk], prepared=True)
    if not rows:
        raise ModelVersion.DoesNotExist(f"Version {version.version} no longer exists.")
    locked = sql.version.build(rows[0])
    locked.model = sql.model.build(rows[0], sql.version.width)
    if locked.is_frozen:
        raise Conflict(f"Version {locked.version} is {locked.status}: {frozen}.", code="version_frozen")
    return locked


def _check_file_count(version: ModelVersion, new_paths: list[str] | tuple[str, ...]) -> None:
    """Refuse ``new_paths`` (paths the version does not hold yet) past the per-version limit."""
    limit = settings.MODELYARD_MAX_FILES_PER_VERSION
    if new_paths and version.files.count() + len(new_paths) > limit:
        raise ValidationError({"path": f"A version may hold at most {limit} files."})


def _blob_store(spooled: artifacts.Spooled | artifacts.Staged) -> Blob:
    """Make ``spooled`` a blob: place its bytes unless a blob row already vouches for them.

    The row lock serializes this with ``blob_gc``, which deletes bytes before rows: either we
    see the row (and the bytes are there) or we place the bytes again ourselves.
    """
    store = artifacts.get_store()
    with transaction.atomic():
        blob = Blob.objects.select_for_update().filter(pk=spooled.sha256).first()
        if blob is not None:
            spooled.discard()
            return blob
        store.place(spooled)
        try:
            with transaction.atomic():
                return Blob.objects.create(sha256=spooled.sha256, size=spooled.size)
        except IntegrityError:  # the same content was placed concurrently: same bytes, same key
            return Blob.objects.get(pk=spooled.sha256)


def _version_file_put(*, actor, version: ModelVersion, path: str, blob: Blob, action: str) -> VersionFile:
    """Point ``path`` of a PENDING version at ``blob`` (inside the caller's transaction)."""
    version = _lock_pending_version(version)
    existing = VersionFile.objects.filter(version=version, path=path).select_related("blob").first()
    _check_file_count(version, () if existing else (path,))
    before = {"path": path, "sha256": existing.blob_id, "size": existing.blob.size} if existing else None
    if existing:
        existing.blob = blob
        existing.save(update_fields=["blob"])
        item = existing
    else:
        item = VersionFile.objects.create(version=version, path=path, blob=blob)
    audit_record(
        actor=actor,
        action=action,
        obj=version,
        before=before,
        after={"path": path, "sha256": blob.sha256, "size": blob.size},
    )
    return item


def version_file_upload(
    *,
    actor,
    version: ModelVersion,
    path: str,
    stream,
    size: int | None,
    expected_sha256: str | None = None,
) -> VersionFile:
    """Stream a file into a PENDING version, hashing as it arrives.

    Nothing is visible until the bytes are complete, verified against ``expected_sha256`` (if
    given) and placed; a broken or rejected upload leaves no file, row or partial blob.
    """
    _require(actor, "models_app.change_modelversion", version)
    path = artifacts.validate_file_path(path)
    if expected_sha256 is not None:
        expected_sha256 = artifacts.validate_sha256(expected_sha256, "X-Content-SHA256")
    limit = settings.MODELYARD_MAX_FILE_SIZE
    if size is not None and size > limit:
        raise ValidationError({"file": f"The file is larger than the limit of {limit} bytes."})
    if version.is_frozen:  # fail before reading gigabytes; re-checked under lock below
        _lock_pending_version(version)
    store = artifacts.get_store()
    spooled = artifacts.spool(stream, expected_size=size, limit=limit, directory=store.spool_dir())
    try:
        if expected_sha256 and spooled.sha256 != expected_sha256:
            raise Conflict(
                f"Content SHA-256 {spooled.sha256} does not match X-Content-SHA256 {expected_sha256}; "
                "nothing was kept.",
                field="sha256",
                code="digest_mismatch",
            )
        blob = _blob_store(spooled)
        with transaction.atomic():
            return _version_file_put(
                actor=actor, version=version, path=path, blob=blob, action="file.uploaded"
            )
    finally:
        spooled.discard()


def blob_put(*, stream, size: int | None) -> Blob:
    """Store a stream as a blob, hashing as it arrives (never held in memory whole).

    Content the store already holds is not stored twice. The caller checks permissions and links
    the blob to a row (a blob nothing points at is collected by ``gc_blobs`` after the grace).
    """
    limit = settings.MODELYARD_MAX_FILE_SIZE
    if size is not None and size > limit:
        raise ValidationError({"file": f"The file is larger than the limit of {limit} bytes."})
    store = artifacts.get_store()
    spooled = artifacts.spool(stream, expected_size=size, limit=limit, directory=store.spool_dir())
    try:
        return _blob_store(spooled)
    finally:
        spooled.discard()


def blobs_visible_to(*, user, digests: set[str]) -> set[str]:
    """The digests among ``digests`` that are part of a version ``user`` may read (dedup
    without leaks: content in another team's private model is not revealed)."""
    from models_app.selectors import model_version_list

    visible_versions = model_version_list(user=user).values("pk")
    found = Blob.objects.filter(pk__in=digests, version_files__version__in=visible_versions)
    return set(found.values_list("pk", flat=True).distinct())


def _blobs_share_locked(digests: set[str]):
    """The blobs of ``digests``, locked until the transaction ends so ``blob_gc`` (which takes
    them FOR UPDATE) cannot remove them under us. The lock is shared on PostgreSQL: versions
    attaching the same content (many registered from one logged model) do not queue behind
    each other, as they did with FOR UPDATE (create version did not scale past concurrency 1).
    SQLite has no row locks: its write lock serializes the transaction with ``blob_gc``."""
    if not digests or connection.vendor != "postgresql":
        return list(Blob.objects.filter(pk__in=digests).order_by("pk"))
    sql = _statements()
    # One array parameter whatever the number of digests: one prepared statement (a primary-key
    # lookup, so its plan does not depend on the values).
    rows = rawsql.fetch(sql.blobs_sql, ["{" + ",".join(sorted(digests)) + "}"], prepared=True)
    return [sql.blob.build(row) for row in rows]


def _readable_blobs(
    *, actor, files: list[dict], vouched_blobs: frozenset[str]
) -> tuple[dict[str, str], dict[str, Blob]]:
    """``({path: sha256}, {sha256: blob})`` for ``files`` (``{path, sha256}``, validated; a path
    named twice takes its last digest): the blobs the registry holds and ``actor`` may read,
    share-locked until the transaction ends. ``vouched_blobs`` are readable by another route."""
    wanted: dict[str, str] = {}
    for entry in files:
        wanted[artifacts.validate_file_path(entry["path"])] = artifacts.validate_sha256(entry["sha256"])
    digests = set(wanted.values())
    readable = digests & vouched_blobs
    if digests - readable:
        readable |= blobs_visible_to(user=actor, digests=digests - readable)
    return wanted, {b.pk: b for b in _blobs_share_locked(readable)}


@transaction.atomic
def version_files_attach(
    *, actor, version: ModelVersion, files: list[dict], vouched_blobs: frozenset[str] = frozenset()
) -> dict:
    """Add files to a PENDING version by the SHA-256 of content the registry already holds.

    ``vouched_blobs`` are digests the caller has already shown ``actor`` may read by another
    route (the files of an MLflow run or logged model the actor can see); other digests must be
    part of a version the actor can read. A path named twice takes its last digest.

    Returns ``{"attached": [...], "missing": [...]}``: the caller uploads the missing ones. A
    constant number of queries whatever the number of files (an MLflow model has 5-10), and
    one audit record per attached file.
    """
    _require(actor, "models_app.change_modelversion", version)
    wanted, blobs = _readable_blobs(actor=actor, files=files, vouched_blobs=vouched_blobs)
    missing = [{"path": path, "sha256": sha} for path, sha in wanted.items() if sha not in blobs]
    present = {path: blobs[sha] for path, sha in wanted.items() if sha in blobs}
    if not present:
        return {"attached": [], "missing": missing}
    version = _lock_pending_version(version)
    existing = {
        f.path: f
        for f in VersionFile.objects.filter(version=version, path__in=list(present)).select_related("blob")
    }
    added = [path for path in present if path not in existing]
    _check_file_count(version, added)
    changes, moved = [], []
    for path, blob in present.items():
        item = existing.get(path)
        changes.append(
            (
                {"path": path, "sha256": item.blob_id, "size": item.blob.size} if item else None,
                {"path": path, "sha256": blob.sha256, "size": blob.size},
            )
        )
        if item is not None:
            item.blob = blob
            moved.append(item)
    VersionFile.objects.bulk_update(moved, ["blob"])
    VersionFile.objects.bulk_create([VersionFile(version=version, path=p, blob=present[p]) for p in added])
    audit_records(actor=actor, action="file.attached", obj=version, changes=changes)
    attached = [{"path": path, "sha256": blob.sha256, "size": blob.size} for path, blob in present.items()]
    return {"attached": attached, "missing": missing}


@transaction.atomic
def version_file_delete(*, actor, version: ModelVersion, path: str) -> None:
    """Remove a path from a PENDING version (its blob stays until ``gc_blobs``)."""
    _require(actor, "models_app.change_modelversion", version)
    version = _lock_pending_version(version)
    item = VersionFile.objects.select_related("blob").filter(version=version, path=path).first()
    if item is None:
        raise VersionFile.DoesNotExist(f"Version {version.version} has no file '{path}'.")
    item.delete()
    audit_record(
        actor=actor,
        action="file.deleted",
        obj=version,
        before={"path": path, "sha256": item.blob_id, "size": item.blob.size},
    )


@transaction.atomic
def model_version_finalize(*, actor, version: ModelVersion) -> ModelVersion:
    """Verify every file is in the store with its size, record the manifest digest, mark READY.

    From then on the version's files and provenance cannot change.
    """
    _require(actor, "models_app.change_modelversion", version)
    version = _lock_pending_version(version)
    files = [(f.path, f.blob) for f in version.files.select_related("blob").order_by("path")]
    before = _snapshot_version(version)
    _mark_ready(version, files)
    version.save(update_fields=["manifest_digest", "status", "finalized_at", "updated_at"])
    audit_record(
        actor=actor, action="version.finalized", obj=version, before=before, after=_finalized(version, files)
    )
    _after_ready(version)
    return version


def _mark_ready(version: ModelVersion, files: list[tuple[str, Blob]]) -> None:
    """Check every file's bytes are in the store with their size; set the manifest digest and
    READY on ``version`` (the caller saves it)."""
    if not files:
        raise ValidationError({"files": "A version needs at least one file before it is finalized."})
    store = artifacts.get_store()
    broken = [path for path, blob in files if store.stored_size(blob.sha256) != blob.size]
    if broken:
        raise Conflict(
            f"These files are missing or damaged in the store: {', '.join(broken[:10])}. Upload them again.",
            code="files_damaged",
        )
    version.manifest_digest = artifacts.manifest_digest((path, b.sha256, b.size) for path, b in files)
    version.status = VersionStatus.READY
    version.finalized_at = timezone.now()


def _finalized(version: ModelVersion, files: list) -> dict:
    """The "after" of a ``version.finalized`` audit record."""
    return {**_snapshot_version(version), "manifest_digest": version.manifest_digest, "files": len(files)}


def _after_ready(version: ModelVersion) -> None:
    """Queue the version-ready hooks once the transaction that made ``version`` READY commits."""
    from models_app.tasks import version_ready_task

    # A broker outage must not turn a committed finalize into an error: logged, not raised.
    version_id = version.pk
    transaction.on_commit(lambda: version_ready_task.delay(version_id=version_id), robust=True)


@transaction.atomic
def model_version_register(
    *,
    actor,
    model: RegisteredModel,
    files: list[dict],
    vouched_blobs: frozenset[str] = frozenset(),
    description: str = "",
    source: str = "",
    tags: dict[str, str] | None = None,
    provenance: Callable[[ModelVersion, list[dict]], list[tuple[str, dict | None, dict]]] | None = None,
) -> ModelVersion:
    """Create the next version of ``model`` from content the registry already holds, READY.

    What ``model_version_create``, ``version_files_attach`` and ``model_version_finalize`` do
    in turn, with the same checks and the same audit records, in one transaction: READY with
    all its files or nothing at all (the number is given back). A version made in this
    transaction has nothing to lock again, re-read, replace or count, and its row is written
    READY at once, so none of that is done (the MLflow API registers every version this way:
    34 statements became 14).

    ``files`` are ``{"path", "sha256"}``; each must be content ``actor`` may read
    (``vouched_blobs`` as in ``version_files_attach``), or nothing is created (403).
    ``provenance(version, attached)`` writes what else belongs to the version before it is
    READY (``attached``: ``{path, sha256, size}``) and returns ``(action, before, after)``
    audit entries for it.
    """
    _require(actor, "models_app.add_modelversion", model)
    version = ModelVersion(model=model, version=1, description=description, source=source, created_by=actor)
    _full_clean(version, exclude=["model", "version", "created_by"])
    _require(actor, "models_app.change_modelversion", version)
    wanted, blobs = _readable_blobs(actor=actor, files=files, vouched_blobs=vouched_blobs)
    unreadable = sorted(path for path, sha in wanted.items() if sha not in blobs)
    if unreadable:
        raise PermissionDenied(
            f"These files are not in the registry or not readable by you: {', '.join(unreadable[:10])}."
        )
    limit = settings.MODELYARD_MAX_FILES_PER_VERSION
    if len(wanted) > limit:
        raise ValidationError({"path": f"A version may hold at most {limit} files."})
    present = [(path, blobs[sha]) for path, sha in wanted.items()]
    pending = _snapshot_version(version)
    _mark_ready(version, present)
    _version_insert(version, tags)  # READY in its first row: outside this transaction it never was PENDING
    created = pending | {"version": version.version}
    rawsql.inserter(VersionFile).insert([VersionFile(version=version, path=p, blob=b) for p, b in present])
    attached = [{"path": path, "sha256": blob.sha256, "size": blob.size} for path, blob in present]
    entries: list[tuple[str, dict | None, dict]] = [
        ("version.created", None, created),
        *(("file.attached", None, item) for item in attached),
        *(provenance(version, attached) if provenance else ()),
        ("version.finalized", created, _finalized(version, present)),
    ]
    audit_entries(actor=actor, obj=version, entries=entries)
    _after_ready(version)
    return version


# --- Resumable uploads in parts ---------------------------------------------------------------

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PARTS = 10_000


def _part_size_for(size: int, requested: int | None) -> int:
    part = requested or settings.MODELYARD_UPLOAD_PART_SIZE
    part = max(part, MIN_PART_SIZE, -(-size // MAX_PARTS))
    return part


@transaction.atomic
def upload_session_begin(
    *, actor, version: ModelVersion, path: str, size: int, sha256: str, part_size: int | None = None
) -> UploadSession:
    """Open a resumable upload of ``size`` bytes with digest ``sha256`` for ``path``."""
    _require(actor, "models_app.change_modelversion", version)
    path = artifacts.validate_file_path(path)
    sha256 = artifacts.validate_sha256(sha256)
    limit = settings.MODELYARD_MAX_FILE_SIZE
    if size < 0 or size > limit:
        raise ValidationError({"size": f"Give a size between 0 and {limit} bytes."})
    version = _lock_pending_version(version)
    _check_file_count(version, () if version.files.filter(path=path).exists() else (path,))
    store = artifacts.get_store()
    session = UploadSession(
        version=version,
        path=path,
        size=size,
        sha256=sha256,
        part_size=_part_size_for(size, part_size),
        backend=store.kind,
        created_by=actor,
        expires_at=timezone.now() + timedelta(hours=settings.MODELYARD_UPLOAD_SESSION_HOURS),
    )
    session.backend_upload_id = store.parts_begin(session.staging_key)
    session.save()
    audit_record(
        actor=actor,
        action="upload.started",
        obj=version,
        after={"path": path, "size": size, "sha256": sha256},
    )
    return session


def _open_session(session: UploadSession) -> UploadSession:
    locked = UploadSession.objects.select_for_update().select_related("version__model").get(pk=session.pk)
    if locked.state != UploadState.OPEN or locked.expires_at <= timezone.now():
        raise Conflict(
            f"Upload {locked.id} is {locked.state if locked.state != UploadState.OPEN else 'expired'}.",
            code="upload_closed",
        )
    return locked


def upload_session_part_write(
    *, actor, session: UploadSession, part_number: int, stream, size: int | None
) -> dict:
    """Store one part of a folder-backed upload (S3 parts go to their presigned URLs)."""
    _require(actor, "models_app.change_modelversion", session.version)
    with transaction.atomic():
        session = _open_session(session)
    if not 1 <= part_number <= session.part_count:
        raise ValidationError({"part_number": f"Give a part number from 1 to {session.part_count}."})
    last = part_number == session.part_count
    expected = session.size - session.part_size * (session.part_count - 1) if last else session.part_size
    if size is not None and size != expected:
        raise ValidationError({"Content-Length": f"Part {part_number} must be exactly {expected} bytes."})
    sha256 = artifacts.get_store().part_write(session.staging_key, part_number, stream, expected)
    return {"part_number": part_number, "size": expected, "sha256": sha256}


def upload_session_complete(*, actor, session: UploadSession) -> VersionFile:
    """Assemble the parts, check size and SHA-256 against what was announced, add the file."""
    _require(actor, "models_app.change_modelversion", session.version)
    with transaction.atomic():
        session = _open_session(session)
    store = artifacts.get_store()
    spooled = store.parts_complete(
        session.staging_key, session.backend_upload_id, session.part_count, settings.MODELYARD_MAX_FILE_SIZE
    )
    try:
        if (spooled.size, spooled.sha256) != (session.size, session.sha256):
            store.parts_abort(session.staging_key, session.backend_upload_id)
            UploadSession.objects.filter(pk=session.pk).update(state=UploadState.ABORTED)
            raise Conflict(
                f"The uploaded content ({spooled.size} bytes, sha256 {spooled.sha256}) does not match the "
                f"announced {session.size} bytes with sha256 {session.sha256}; nothing was kept.",
                code="digest_mismatch",
            )
        blob = _blob_store(spooled)
        with transaction.atomic():
            item = _version_file_put(
                actor=actor, version=session.version, path=session.path, blob=blob, action="file.uploaded"
            )
            UploadSession.objects.filter(pk=session.pk).update(state=UploadState.COMPLETED)
    finally:
        spooled.discard()
    store.parts_abort(session.staging_key, session.backend_upload_id)  # folder: remove the part files
    return item


@transaction.atomic
def upload_session_abort(*, actor, session: UploadSession) -> None:
    _require(actor, "models_app.change_modelversion", session.version)
    session = _open_session(session)
    artifacts.get_store().parts_abort(session.staging_key, session.backend_upload_id)
    session.state = UploadState.ABORTED
    session.save(update_fields=["state"])
    audit_record(actor=actor, action="upload.aborted", obj=session.version, before={"path": session.path})


# --- Garbage collection ---------------------------------------------------------------------


@dataclass
class GcReport:
    blobs_deleted: int = 0
    bytes_freed: int = 0
    orphans_deleted: int = 0
    uploads_expired: int = 0
    kept_in_flight: int = 0


def blob_gc(*, grace: timedelta, dry_run: bool = False) -> GcReport:
    """Delete blobs no version references, older than ``grace``, and not awaited by an open upload.

    Each blob is deleted under its row lock, bytes first and then the row, so an upload that
    races with it either sees the row (and keeps the bytes referenced) or places them anew.
    Stored objects without a row (a crash between placing and committing) are removed too
    once older than ``grace``; expired upload sessions are aborted.
    """
    report = GcReport()
    store = artifacts.get_store()
    cutoff = timezone.now() - grace
    for session in UploadSession.objects.filter(state=UploadState.OPEN, expires_at__lt=timezone.now()):
        report.uploads_expired += 1
        if not dry_run:
            store.parts_abort(session.staging_key, session.backend_upload_id)
            UploadSession.objects.filter(pk=session.pk, state=UploadState.OPEN).update(
                state=UploadState.ABORTED
            )
    awaited = set(UploadSession.objects.filter(state=UploadState.OPEN).values_list("sha256", flat=True))
    # Every row pointing at a blob keeps it: version files, and whatever other apps store by
    # reference (files of MLflow runs and logged models in lineage_app).
    references = [rel for rel in Blob._meta.related_objects if rel.one_to_many]
    unreferenced = {f"{rel.name}__isnull": True for rel in references}
    candidates = Blob.objects.filter(created_at__lt=cutoff, **unreferenced).values_list("pk", flat=True)
    for sha256 in list(candidates.iterator()):
        if sha256 in awaited:
            report.kept_in_flight += 1
            continue
        with transaction.atomic():
            blob = Blob.objects.select_for_update(skip_locked=True).filter(pk=sha256).first()
            if blob is None or any(
                rel.related_model.objects.filter(**{rel.field.name: sha256}).exists() for rel in references
            ):
                continue  # locked by an upload right now, or referenced since we listed it
            report.blobs_deleted += 1
            report.bytes_freed += blob.size
            if not dry_run:
                store.delete(sha256)
                blob.delete()
    known = set(Blob.objects.values_list("pk", flat=True))
    for name, mtime in store.list_blob_keys():
        if name not in known and mtime < cutoff.timestamp() and name not in awaited:
            report.orphans_deleted += 1
            if not dry_run:
                with transaction.atomic():
                    if not Blob.objects.select_for_update().filter(pk=name).exists():
                        store.delete(name)
    return report


def model_version_ready_hooks_run(*, version_id: int) -> None:
    """Call each hook of ``MODELYARD_VERSION_READY_HOOKS`` with the READY version's id, then
    mark the version done (``ready_hooks_done_at``); a version already done is left alone.

    Hooks belong to other apps (lineage capture from MLmodel files, built-in checks); each must
    be idempotent, since a task redelivered after its worker died runs them again. A hook that
    raises leaves the version owed, for ``version_ready_hooks_sweep``.
    """
    from django.utils.module_loading import import_string

    owed = ModelVersion.objects.filter(pk=version_id, status=VersionStatus.READY, ready_hooks_done_at=None)
    if not owed.exists():
        return  # deleted, not READY, or done by an earlier copy of the task: nothing to follow up
    for dotted in settings.MODELYARD_VERSION_READY_HOOKS:
        import_string(dotted)(version_id=version_id)
    owed.update(ready_hooks_done_at=timezone.now())


SWEEP_BATCH = 500


def version_ready_hooks_sweep(*, now: datetime | None = None) -> list[int]:
    """Queue the hooks again for READY versions still owed them ``MODELYARD_READY_HOOKS_GRACE_MINUTES``
    (an hour) after their finalize: the queueing after commit was lost (broker down, process
    killed in between).

    A queue backed up past the grace gets a second copy, which does nothing once the first has
    run (``model_version_ready_hooks_run`` skips versions that are done). Versions finalized more
    than ``MODELYARD_READY_HOOKS_SWEEP_DAYS`` ago are left alone, so a hook that fails on every
    run is not retried forever. At most ``SWEEP_BATCH`` a run, oldest first; returns their ids.
    """
    from models_app.tasks import version_ready_task

    now = now or timezone.now()
    ids = list(
        ModelVersion.objects.filter(
            status=VersionStatus.READY,
            ready_hooks_done_at=None,
            finalized_at__lte=now - timedelta(minutes=settings.MODELYARD_READY_HOOKS_GRACE_MINUTES),
            finalized_at__gte=now - timedelta(days=settings.MODELYARD_READY_HOOKS_SWEEP_DAYS),
        )
        .order_by("finalized_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for version_id in ids:
        version_ready_task.delay(version_id=version_id)
    if ids:
        logger.warning("Queued the version-ready hooks again for %d version(s) owed them.", len(ids))
    return ids


# --- Teams and users ------------------------------------------------------------------------


def require_admin(actor) -> None:
    if not actor.is_superuser:
        raise PermissionDenied("Only administrators manage teams and users.")


@transaction.atomic
def team_create(*, actor, name: str) -> Group:
    """Create a team (a Django group that can own models)."""
    require_admin(actor)
    name = name.strip()
    if not name or len(name) > 150:
        raise ValidationError({"name": "Give a team name of 1-150 characters."})
    if Group.objects.filter(name__iexact=name).exists():
        raise Conflict(f"A team named '{name}' already exists.", field="name")
    team = Group.objects.create(name=name)
    audit_record(actor=actor, action="team.created", obj=team, after={"name": name})
    return team


@transaction.atomic
def team_member_set(*, actor, team: Group, user, role: str) -> TeamMembership:
    """Give ``user`` a role in ``team`` (replacing any role they had there)."""
    require_admin(actor)
    if role not in TeamRole.values:
        raise ValidationError({"role": f"Use one of: {', '.join(TeamRole.values)}."})
    membership = TeamMembership.objects.select_for_update().filter(team=team, user=user).first()
    before = {"user": user.get_username(), "role": membership.role} if membership else None
    if membership is None:
        membership = TeamMembership(team=team, user=user)
    membership.role = role
    membership.save()
    audit_record(
        actor=actor,
        action="membership.set",
        obj=membership,
        before=before,
        after={"user": user.get_username(), "role": role},
    )
    return membership


@transaction.atomic
def team_member_remove(*, actor, team: Group, user) -> None:
    require_admin(actor)
    membership = TeamMembership.objects.filter(team=team, user=user).first()
    if membership is None:
        raise TeamMembership.DoesNotExist(f"{user.get_username()} is not in {team.name}.")
    audit_record(
        actor=actor,
        action="membership.removed",
        obj=membership,
        before={"user": user.get_username(), "role": membership.role},
    )
    membership.delete()
