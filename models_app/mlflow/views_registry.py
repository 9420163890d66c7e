"""Model Registry RPCs (``/api/2.0/mlflow/registered-models/*``, ``/model-versions/*``).

Reads are ``models_app.mlflow.reads`` (hand-written SQL, the catalog's visibility rule); writes go
through the catalog and governance services: permissions, audit, events and the promotion policy
are exactly those of the native API.
"""

from __future__ import annotations

import re

from django.core.exceptions import PermissionDenied
from django.db import transaction

from lineage_app.services_mlflow import TEAM_TAG, mlflow_model_version_create, mlflow_team_resolve
from models_app import selectors, services, services_governance
from models_app.choices import PromotionState, Stage, Visibility
from models_app.mlflow import encode, reads, search, tokens
from models_app.mlflow.errors import RESOURCE_ALREADY_EXISTS, MlflowError, invalid, not_found
from models_app.mlflow.rpc import Params, endpoint, version_number
from models_app.models import ModelAlias, ModelTag, ModelVersion, RegisteredModel, VersionTag
from registry_project.errors import Conflict

VISIBILITY_TAG = "modelyard.visibility"
RM_MAX_RESULTS = 1000
MV_MAX_RESULTS = 200_000
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


def _model(user, name: str) -> RegisteredModel:
    """The visible model ``name`` as an instance, for writes (reads encode from ``reads``)."""
    model = reads.model_for_write(user=user, name=name)
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    return model


def _version_missing(user, name: str, number: int) -> MlflowError:
    """What a version miss says: the model, or the version, does not exist."""
    model = _model(user, name)  # raises "Registered Model ... not found"
    return not_found(f"Model Version (name={model.name}, version={number}) not found")


def _model_and_version(request, params: Params) -> tuple[RegisteredModel, ModelVersion]:
    """The visible version ``name``/``version`` and its model as instances, for writes."""
    name = params.str("name", required=True)
    number = version_number(params.str("version", required=True))
    found = reads.version_for_write(user=request.user, name=name, number=number)
    if found is None:
        raise _version_missing(request.user, name, number)
    return found


def _model_body(user, model: RegisteredModel) -> dict:
    return {"registered_model": reads.model_by_id(user=user, pk=model.pk)}


def _version_body(user, version: ModelVersion) -> dict:
    return {"model_version": reads.version_by_id(user=user, pk=version.pk)}


def _max_results(params: Params, default: int, limit: int) -> int:
    value = params.int("max_results", default=default)
    if value is None or value < 1 or value > limit:
        raise invalid(
            f"Invalid value {value} for parameter 'max_results' supplied: it must be a positive integer "
            f"at most {limit}."
        )
    return value


# --- Registered models ----------------------------------------------------------------------


@endpoint("POST")
def registered_model_create(request, params: Params):
    name = params.str("name", required=True)
    tags = params.key_values("tags")
    if RegisteredModel.objects.filter(name__iexact=name).exists():
        raise MlflowError(f"Registered Model (name={name}) already exists.", RESOURCE_ALREADY_EXISTS)
    team = mlflow_team_resolve(actor=request.user, tags=tags)
    visibility = tags.pop(VISIBILITY_TAG, Visibility.INTERNAL)
    if visibility not in Visibility.values:
        raise invalid(f"Tag {VISIBILITY_TAG} must be one of {', '.join(Visibility.values)}.")
    tags.pop(TEAM_TAG, None)
    model = services.registered_model_create(
        actor=request.user,
        name=name,
        team=team,
        description=params.str("description"),
        visibility=visibility,
        tags=tags,
    )
    return _model_body(request.user, model)


@endpoint("GET")
def registered_model_get(request, params: Params):
    name = params.str("name", required=True)
    found = reads.model_get(user=request.user, name=name)
    if found is None:
        raise not_found(f"Registered Model with name={name} not found")
    return {"registered_model": found}


@endpoint("POST")
def registered_model_rename(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    new_name = params.str("new_name", required=True)
    if (
        new_name.lower() != model.name.lower()
        and RegisteredModel.objects.filter(name__iexact=new_name).exists()
    ):
        raise MlflowError(f"Registered Model (name={new_name}) already exists.", RESOURCE_ALREADY_EXISTS)
    model = services.registered_model_update(actor=request.user, model=model, name=new_name)
    return _model_body(request.user, model)


@endpoint("PATCH")
def registered_model_update(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    if "description" in params.data:
        model = services.registered_model_update(
            actor=request.user, model=model, description=params.str("description")
        )
    return _model_body(request.user, model)


@endpoint("DELETE")
def registered_model_delete(request, params: Params):
    services.registered_model_delete(
        actor=request.user, model=_model(request.user, params.str("name", required=True))
    )
    return {}


_RM_ORDER = {
    "name": "m.name",
    "timestamp": "m.updated_at",
    "last_updated_timestamp": "m.updated_at",
    "creation_timestamp": "m.created_at",
}


@endpoint("GET")
def registered_model_search(request, params: Params):
    max_results = _max_results(params, 100, RM_MAX_RESULTS)
    where = search.registered_model_where(search.parse(params.str("filter")))
    ordering = search.order_by([str(o) for o in params.list("order_by")], _RM_ORDER, ["m.name ASC"])
    if not any(term.startswith("m.name ") for term in ordering):
        ordering.append("m.name ASC")
    offset, after = tokens.decode_page(params.str("page_token") or None)
    keyset = ordering == reads.NAME_ORDER  # the default: pages resume after the last name seen
    models, more, last = reads.model_search(
        user=request.user,
        where=where,
        order=ordering,
        offset=offset,
        limit=max_results,
        after=after if keyset else None,
    )
    token = tokens.encode(offset + max_results, after=last if keyset else None) if more else None
    return _search_body("registered_models", models, token)


def _search_body(key: str, found: list[dict], token: str | None) -> dict:
    body: dict = {key: found} if found else {}
    if token is not None:
        body["next_page_token"] = token
    return body


def _stages(raw: list) -> list[str]:
    stages = []
    for item in raw:
        stage = encode.STAGE_FROM_MLFLOW.get(str(item).lower())
        if stage is None:
            raise invalid(
                f"Invalid Model Version stage: {item}. "
                "Value must be one of None, Staging, Production, Archived."
            )
        stages.append(stage)
    return stages


@endpoint("POST", "GET", write=False)
def registered_model_latest_versions(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    stages = _stages(params.list("stages")) or None
    versions = reads.latest_versions(model_id=model.pk, stages=stages)
    return {"model_versions": versions} if versions else {}


@endpoint("POST")
def registered_model_set_tag(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    services.model_tag_set(
        actor=request.user, model=model, key=params.str("key", required=True), value=params.str("value")
    )
    return {}


@endpoint("DELETE")
def registered_model_delete_tag(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    try:
        services.model_tag_delete(actor=request.user, model=model, key=params.str("key", required=True))
    except ModelTag.DoesNotExist:
        if not request.user.has_perm("models_app.change_registeredmodel", model):
            raise PermissionDenied(f"You cannot change {model}.") from None
    return {}


def _check_alias_name(alias: str) -> None:
    if alias.lower() == "latest":
        raise invalid("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(alias) or alias.isdigit():
        raise invalid(f"Version alias name '{alias}' is reserved.")


@endpoint("POST", "DELETE", "GET")
def registered_model_alias(request, params: Params):
    name = params.str("name", required=True)
    alias = params.str("alias", required=True)
    if request.method == "GET":  # a miss says what is missing
        found = reads.version_by_alias(user=request.user, name=name, alias=alias)
        if found is None:
            _model(request.user, name)
            raise invalid(f"Registered model alias {alias} not found.")
        return {"model_version": found}
    if request.method == "POST":
        _check_alias_name(alias)
        model, version = _model_and_version(request, params)
        services.model_alias_set(actor=request.user, model=model, alias=alias, version=version)
        return {}
    model = _model(request.user, name)
    if request.method == "DELETE":
        try:
            services.model_alias_delete(actor=request.user, model=model, alias=alias)
        except ModelAlias.DoesNotExist:
            if not request.user.has_perm("models_app.delete_modelalias", model):
                raise PermissionDenied(f"You cannot change aliases of {model}.") from None
    return {}


# --- Model versions -------------------------------------------------------------------------


@endpoint("POST")
def model_version_create(request, params: Params):
    model = _model(request.user, params.str("name", required=True))
    version = mlflow_model_version_create(
        actor=request.user,
        model=model,
        source=params.str("source", required=True),
        run_id=params.str("run_id"),
        model_id=params.str("model_id"),
        description=params.str("description"),
        tags=params.key_values("tags"),
    )
    return _version_body(request.user, version)


@endpoint("GET")
def model_version_get(request, params: Params):
    name = params.str("name", required=True)
    number = version_number(params.str("version", required=True))
    found = reads.version_get(user=request.user, name=name, number=number)
    if found is None:
        raise _version_missing(request.user, name, number)
    return {"model_version": found}


@endpoint("PATCH")
def model_version_update(request, params: Params):
    _, version = _model_and_version(request, params)
    if "description" in params.data:
        version = services.model_version_update(
            actor=request.user, version=version, description=params.str("description")
        )
    return _version_body(request.user, version)


@endpoint("DELETE")
def model_version_delete(request, params: Params):
    _, version = _model_and_version(request, params)
    services.model_version_delete(actor=request.user, version=version)
    return {}


@endpoint("POST")
def model_version_transition_stage(request, params: Params):
    """Stage changes go through the promotion policy: approvals, checks, four eyes.

    When approval is needed the pending request is kept and the answer is ``PERMISSION_DENIED``
    naming it (the MLflow client then raises; the version moves once approvers agree).
    """
    model, version = _model_and_version(request, params)
    raw_stage = params.str("stage", required=True)
    stages = _stages([raw_stage])
    target = stages[0]
    archive_existing = params.bool("archive_existing_versions")
    if archive_existing and target not in (Stage.STAGING, Stage.PRODUCTION):
        raise invalid(
            f"'archive_existing_versions' is only allowed for Staging and Production, not {raw_stage}."
        )
    if version.stage != target:
        try:
            with transaction.atomic():
                promotion = services_governance.promotion_request(
                    actor=request.user, version=version, target_stage=target, comment="via the MLflow API"
                )
        except Conflict as exc:
            if exc.code == "checks_failing":  # the policy refuses: a permission answer, not a bad input
                raise MlflowError(exc.message, "PERMISSION_DENIED") from exc
            raise
        if promotion.state == PromotionState.PENDING:
            needed = services.policy_get(model=model).approvals_needed(target)
            raise MlflowError(
                f"Moving {model.name} version {version.version} to {encode.STAGE_TO_MLFLOW[target]} needs "
                f"{needed} approval(s): promotion request #{promotion.pk} is pending.",
                "PERMISSION_DENIED",
            )
    if archive_existing:
        others = selectors.model_version_list(user=request.user, model=model).filter(stage=target)
        for other in others.exclude(pk=version.pk):
            with transaction.atomic():
                services_governance.promotion_request(
                    actor=request.user,
                    version=other,
                    target_stage=Stage.ARCHIVED,
                    comment=f"archived: version {version.version} entered {target}",
                )
    return _version_body(request.user, version)


@endpoint("GET")
def model_version_download_uri(request, params: Params):
    model, version = _model_and_version(request, params)
    return {"artifact_uri": f"mlflow-artifacts:/{REGISTRY_ROOT}/{model.name}/{version.version}"}


REGISTRY_ROOT = "_registry"

_MV_ORDER = {
    "name": "m.name",
    "version_number": "v.version",
    "creation_timestamp": "v.created_at",
    "timestamp": "v.updated_at",
    "last_updated_timestamp": "v.updated_at",
}


@endpoint("GET")
def model_version_search(request, params: Params):
    max_results = _max_results(params, 10_000, MV_MAX_RESULTS)
    where = search.model_version_where(search.parse(params.str("filter")))
    ordering = search.order_by(
        [str(o) for o in params.list("order_by")],
        _MV_ORDER,
        ["v.updated_at DESC", "m.name ASC", "v.version DESC"],
    )
    offset = tokens.decode(params.str("page_token") or None)
    versions, more = reads.version_search(
        user=request.user, where=where, order=ordering, offset=offset, limit=max_results
    )
    return _search_body("model_versions", versions, tokens.encode(offset + max_results) if more else None)


@endpoint("POST")
def model_version_set_tag(request, params: Params):
    _, version = _model_and_version(request, params)
    services.version_tag_set(
        actor=request.user, version=version, key=params.str("key", required=True), value=params.str("value")
    )
    return {}


@endpoint("DELETE")
def model_version_delete_tag(request, params: Params):
    _, version = _model_and_version(request, params)
    try:
        services.version_tag_delete(actor=request.user, version=version, key=params.str("key", required=True))
    except VersionTag.DoesNotExist:
        if not request.user.has_perm("models_app.change_modelversion", version):
            raise PermissionDenied(f"You cannot change {version}.") from None
    return {}
