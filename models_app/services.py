"""Writes to the catalog. Every function checks the actor's permission, runs in one
transaction and records an audit event with the state before and after."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from models_app.choices import TokenScope, VersionStatus, Visibility
from models_app.models import (
    AccessToken,
    AuditEvent,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    VersionTag,
)
from models_app.models.access import TOKEN_PREFIX
from registry_project import request_context
from registry_project.errors import Conflict

# --- Audit ---------------------------------------------------------------------------------


def _model_of(obj: Any) -> RegisteredModel | None:
    if isinstance(obj, RegisteredModel):
        return obj
    model = getattr(obj, "model", None)
    return model if isinstance(model, RegisteredModel) else None


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
    ctx = request_context.current()
    model = model or _model_of(obj)
    actor = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
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


def _require(actor, perm: str, obj: Any = None) -> None:
    if not actor.has_perm(perm, obj):
        raise PermissionDenied(f"You do not have the '{perm.split('.')[-1]}' permission on {obj}.")


def _snapshot_model(model: RegisteredModel) -> dict:
    return {
        "name": model.name,
        "description": model.description,
        "team": model.team.name,
        "visibility": model.visibility,
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
) -> RegisteredModel:
    """Register a new model owned by ``team``; the actor must be a contributor of that team."""
    _require(actor, "models_app.add_registeredmodel", team)
    model = RegisteredModel(
        name=name, team=team, description=description, visibility=visibility, created_by=actor
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
    """Change name, description, visibility or owning team.

    Moving a model to another team needs the right to create models in that team as well.
    """
    _require(actor, "models_app.change_registeredmodel", model)
    allowed = {"name", "description", "visibility", "team"}
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
    audit_record(actor=actor, action="model.deleted", obj=model, before=_snapshot_model(model))
    model.delete()


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
    with no gap and no duplicate; a rolled-back creation gives its number back.
    """
    _require(actor, "models_app.add_modelversion", model)
    locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    locked.last_version_number += 1
    version = ModelVersion(
        model=locked,
        version=locked.last_version_number,
        description=description,
        source=source,
        created_by=actor,
    )
    _full_clean(version, exclude=["model"])
    locked.save(update_fields=["last_version_number", "updated_at"])
    version.save()
    for key, value in (tags or {}).items():
        _tag_save(VersionTag(version=version, key=key, value=value))
    audit_record(actor=actor, action="version.created", obj=version, after=_snapshot_version(version))
    return version


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
    audit_record(actor=actor, action="version.deleted", obj=version, before=_snapshot_version(version))
    version.delete()


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


@transaction.atomic
def model_alias_set(*, actor, model: RegisteredModel, alias: str, version: ModelVersion) -> ModelAlias:
    """Point ``alias`` at ``version`` (creating or moving it)."""
    if version.model_id != model.pk:
        raise ValidationError({"version": f"Version {version.version} does not belong to '{model.name}'."})
    existing = ModelAlias.objects.select_for_update().filter(model=model, alias=alias).first()
    _require(actor, "models_app.change_modelalias" if existing else "models_app.add_modelalias", model)
    before = {"alias": alias, "version": existing.version.version} if existing else None
    item = existing or ModelAlias(model=model, alias=alias)
    item.version = version
    item.updated_by = actor
    _full_clean(item, exclude=["model", "version"])
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError as exc:  # a concurrent request created the same alias
        raise Conflict(f"Alias '{alias}' was set concurrently; retry.", field="alias") from exc
    audit_record(
        actor=actor, action="alias.set", obj=item, before=before, after={"alias": alias, "version": version.version}
    )
    return item


@transaction.atomic
def model_alias_delete(*, actor, model: RegisteredModel, alias: str) -> None:
    _require(actor, "models_app.delete_modelalias", model)
    item = ModelAlias.objects.select_related("version").filter(model=model, alias=alias).first()
    if item is None:
        raise ModelAlias.DoesNotExist(f"Model '{model.name}' has no alias '{alias}'.")
    audit_record(actor=actor, action="alias.deleted", obj=item, before={"alias": alias, "version": item.version.version})
    item.delete()


# --- Access tokens --------------------------------------------------------------------------


def _clean_scopes(scopes: list[str]) -> list[str]:
    valid = set(TokenScope.values)
    if not scopes:
        raise ValidationError({"scopes": "Give at least one scope: read, write or admin."})
    if bad := [s for s in scopes if s not in valid]:
        raise ValidationError({"scopes": f"Unknown scope(s): {', '.join(map(str, bad))}. Use read, write, admin."})
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
        after={"name": name, "user": user.get_username(), "scopes": scopes, "expires_at": token.expires_at.isoformat()},
    )
    return token, raw


@transaction.atomic
def access_token_revoke(*, actor, token: AccessToken) -> AccessToken:
    """Revoke a token now. Revoking twice is harmless."""
    if actor.pk != token.user_id and not actor.is_superuser:
        raise PermissionDenied("You can only revoke your own tokens.")
    updated = AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    if updated:
        audit_record(actor=actor, action="token.revoked", obj=token, before={"name": token.name})
    return token


def access_token_authenticate(raw: str) -> AccessToken | None:
    """Return the active token matching ``raw``, marking it used at most once a minute."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = AccessToken.objects.select_related("user").filter(digest=AccessToken.digest_of(raw)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


