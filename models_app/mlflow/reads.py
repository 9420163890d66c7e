"""The Model Registry RPCs' reads: MLflow's JSON straight from hand-written SQL.

This is the MLflow API's hot path (the client reads far more than it writes), so it skips the
ORM's per-call query compilation and model instances (see ``registry_project.rawsql``):

- a version is one query after the token lookup: the version with its model, creator and run,
  and its tags and aliases as JSON arrays from correlated subqueries (``rawsql.json_pairs``);
- a model is two: the model with its tags and aliases, then its latest version per stage;
- a search page is the same one or two queries, whatever the page size: the search grammar
  compiles to SQL conditions (``search.registered_model_where``/``model_version_where``);
- the writes' own lookups (``model_for_write``, ``version_for_write``) are one prepared query each
  that returns model instances, as the services take them.

Visibility is ``selectors.visible_models_sql``, the catalog's rule written as SQL, in every
query here. Lookups by a unique key are prepared statements on PostgreSQL; searches are not
(see ``rawsql.fetch``).
"""

# ruff: noqa: S608 - table and column names come from the models; values are always parameters.

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import orjson
from django.contrib.auth import get_user_model

from lineage_app.models import TrainingRun
from models_app.mlflow import rendered
from models_app.mlflow.encode import STAGE_TO_MLFLOW, STATUS_TO_MLFLOW
from models_app.mlflow.search import Where
from models_app.models import ModelAlias, ModelRevision, ModelTag, ModelVersion, RegisteredModel, VersionTag
from models_app.selectors import visible_models_sql
from registry_project.rawsql import (
    ModelColumns,
    chunks,
    epoch_ms,
    fetch,
    id_in,
    json_columns,
    json_pairs,
    json_row,
    ms,
    qn,
    table,
)

_MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")
_STAGE_ORDER = {stage: index for index, stage in enumerate(STAGE_TO_MLFLOW)}


class _Sql:
    """The statements, built once the apps are loaded (table names come from the models)."""

    def __init__(self) -> None:
        user = get_user_model()
        username = qn(user._meta.get_field(user.USERNAME_FIELD).column)
        key = qn("key")
        version_tags = json_pairs(
            "t." + key, "t.value", f"FROM {table(VersionTag)} t WHERE t.version_id = v.id", "t." + key
        )
        version_aliases = json_pairs(
            "a.alias", "a.alias", f"FROM {table(ModelAlias)} a WHERE a.version_id = v.id", "a.alias"
        )

        # The creator's name and the run id are scalar subqueries, not LEFT JOINs: with two
        # fewer tables to order, PostgreSQL plans a version search in 0.8 ms instead of 1.9
        # (searches are planned on every call; see ``rawsql.fetch``).
        def creator(column: str) -> str:
            return f"(SELECT u.{username} FROM {table(user)} u WHERE u.id = {column})"

        columns = (
            "SELECT v.id, v.model_id, v.version, v.status, v.status_message, v.stage, v.description, "
            f"v.source, {epoch_ms('v.created_at')}, {epoch_ms('v.updated_at')}, m.name, "
            f"{creator('v.created_by_id')}, "
            f"(SELECT r.external_id FROM {table(TrainingRun)} r WHERE r.version_id = v.id), "
            f"{json_columns(version_tags, version_aliases)}"
        )

        # The model's revision (``rendered``), read in the same statement as what it covers.
        def revision(column: str) -> str:
            return f"(SELECT x.revision FROM {table(ModelRevision)} x WHERE x.model_id = {column})"

        joins = f"JOIN {table(RegisteredModel)} m ON m.id = v.model_id "
        self.versions = f"{columns} FROM {table(ModelVersion)} v {joins}WHERE "
        # The highest version per model and stage: one grouped pass over the models' versions,
        # then primary-key joins (a correlated MAX per version row cost ~2 ms a page).
        self.latest = (
            f"{columns}, {revision('v.model_id')} "
            f"FROM (SELECT model_id, stage, MAX(version) AS top FROM {table(ModelVersion)} "
            "WHERE {models} GROUP BY model_id, stage) t "
            f"JOIN {table(ModelVersion)} v ON v.model_id = t.model_id AND v.version = t.top {joins}"
            "WHERE {outer}"  # the models again, or the planner may hash-join every version
        )
        model_tags = json_pairs(
            "t." + key, "t.value", f"FROM {table(ModelTag)} t WHERE t.model_id = m.id", "t." + key
        )
        model_aliases = json_pairs(
            "a.alias",
            f"(SELECT x.version FROM {table(ModelVersion)} x WHERE x.id = a.version_id)",
            f"FROM {table(ModelAlias)} a WHERE a.model_id = m.id",
            "a.alias",
        )
        self.models = (
            f"SELECT m.id, m.name, m.description, {epoch_ms('m.created_at')}, {epoch_ms('m.updated_at')}, "
            f"{creator('m.created_by_id')}, {json_columns(model_tags, model_aliases)}, {revision('m.id')} "
            f"FROM {table(RegisteredModel)} m WHERE "
        )
        # A search page's models when their renderings may be in ``rendered``: keys only.
        self.model_keys = f"SELECT m.id, m.name, {revision('m.id')} FROM {table(RegisteredModel)} m WHERE "
        self.model_columns = ModelColumns(RegisteredModel, "m")
        self.version_columns = ModelColumns(ModelVersion, "v")
        self.model_for_write = (
            f"SELECT {self.model_columns.sql} FROM {table(RegisteredModel)} m "
            "WHERE UPPER(m.name) = UPPER(%s) AND "
        )
        self.version_for_write = (
            f"SELECT {self.version_columns.sql}, {self.model_columns.sql} FROM {table(ModelVersion)} v "
            f"JOIN {table(RegisteredModel)} m ON m.id = v.model_id "
            "WHERE UPPER(m.name) = UPPER(%s) AND v.version = %s AND "
        )
        self.alias_of_model = (
            f"v.id = (SELECT a.version_id FROM {table(ModelAlias)} a "
            "WHERE a.model_id = m.id AND a.alias = %s)"
        )


@functools.cache
def _statements() -> _Sql:
    return _Sql()


# --- Versions -------------------------------------------------------------------------------


def _version(row: Sequence) -> dict:
    (_pk, _model_id, number, status, status_message, stage, description, source, created, updated, name,
     username, run_id, children, *_revision) = row  # fmt: skip
    data = {
        "name": name,
        "version": str(number),
        "creation_timestamp": ms(created),
        "last_updated_timestamp": ms(updated),
        "current_stage": STAGE_TO_MLFLOW.get(stage, "None"),
        "description": description,
        "source": source,
        "run_id": run_id or "",
        "status": STATUS_TO_MLFLOW.get(status, "READY"),
        "run_link": "",
    }
    if username:
        data["user_id"] = username
    if status_message:
        data["status_message"] = status_message
    tags, aliases = json_row(children)
    if tags:
        data["tags"] = [{"key": key, "value": value} for key, value in tags]
    if aliases:
        data["aliases"] = sorted(alias for alias, _ in aliases)
    if match := _MODEL_ID.match(source or ""):
        data["model_id"] = match[1]
    return data


def _versions(where: str, params: list) -> list[dict]:
    """Versions by a unique key (a prepared statement: the plan is the same for every value)."""
    return [_version(row) for row in fetch(_statements().versions + where, params, prepared=True)]


def _one(found: list[dict]) -> dict | None:
    return found[0] if found else None


def version_get(*, user, name: str, number: int) -> dict | None:
    """Version ``number`` of the visible model ``name`` (any case), or None."""
    visible, params = visible_models_sql(user, "m")
    # UPPER(name), as ``name__iexact`` compiles on PostgreSQL: the index of migration 0008.
    return _one(
        _versions(f"UPPER(m.name) = UPPER(%s) AND v.version = %s AND {visible}", [name, number, *params])
    )


def version_by_alias(*, user, name: str, alias: str) -> dict | None:
    visible, params = visible_models_sql(user, "m")
    where = f"UPPER(m.name) = UPPER(%s) AND {_statements().alias_of_model} AND {visible}"
    return _one(_versions(where, [name, alias, *params]))


def version_by_id(*, user, pk: int) -> dict | None:
    visible, params = visible_models_sql(user, "m")
    return _one(_versions(f"v.id = %s AND {visible}", [pk, *params]))


def _latest_rows(model_ids: Sequence[int], stages: Sequence[str] | None) -> list[tuple]:
    rows: list = []
    for part in chunks(list(model_ids)):
        condition, params = id_in("model_id", part)
        if stages is not None:
            condition += f" AND stage IN ({', '.join(['%s'] * len(stages))})"
            params += list(stages)
        outer, outer_params = id_in("v.model_id", part)
        statement = _statements().latest.format(models=condition, outer=outer)
        # One model (a get) is prepared; a page's ids are planned for their number.
        rows += fetch(statement, params + outer_params, prepared=len(part) == 1)
    rows.sort(key=lambda row: (_STAGE_ORDER.get(row[5], len(_STAGE_ORDER)), row[2]))
    return rows


def latest_versions(*, model_id: int, stages: Sequence[str] | None = None) -> list[dict]:
    """The highest version of the (visible) model in each stage, or only in ``stages``."""
    if stages is not None and not stages:
        return []
    return [_version(row) for row in _latest_rows([model_id], stages)]


# --- Registered models ----------------------------------------------------------------------


def _models(rows: list[tuple]) -> dict[int, dict]:
    """MLflow's RegisteredModel for each model row, with latest versions, tags and aliases."""
    return _render_models(rows)[0]


def _render_models(rows: list[tuple]) -> tuple[dict[int, dict], dict[int, int]]:
    """``_models``, and the revision of each model whose latest versions were read at the same
    revision as its row (the two statements see different snapshots: a change committed in
    between is not in the model row's revision, so that rendering must not be kept)."""
    latest_by_model: dict[int, list] = {}
    latest_revisions: dict[int, set] = {}
    for row in _latest_rows([row[0] for row in rows], None):
        latest_by_model.setdefault(row[1], []).append(_version(row))
        latest_revisions.setdefault(row[1], set()).add(row[-1])
    found = {}
    settled = {}
    for pk, name, description, created, updated, username, children, revision in rows:
        if revision is not None and latest_revisions.get(pk, {revision}) == {revision}:
            settled[pk] = revision
        data = {"name": name, "creation_timestamp": ms(created), "last_updated_timestamp": ms(updated)}
        if description:
            data["description"] = description
        if username:
            data["user_id"] = username
        if pk in latest_by_model:
            data["latest_versions"] = latest_by_model[pk]
        tags, aliases = json_row(children)
        if tags:
            data["tags"] = [{"key": key, "value": value} for key, value in tags]
        if aliases:
            data["aliases"] = [{"alias": alias, "version": str(number)} for alias, number in sorted(aliases)]
        found[pk] = data
    return found, settled


def model_get(*, user, name: str) -> dict | orjson.Fragment | None:
    """The visible model called ``name`` (any case), or None; encoded if it comes from a copy."""
    visible, params = visible_models_sql(user, "m")
    where = f"UPPER(m.name) = UPPER(%s) AND {visible}"
    copies = rendered.models()
    if copies is not None:
        keys = fetch(_statements().model_keys + where, [name, *params], prepared=True)
        return next(iter(_rendered_models([(row[0], row[2]) for row in keys], copies)), None)
    rows = fetch(_statements().models + where, [name, *params], prepared=True)
    return next(iter(_models(rows).values()), None)


def model_by_id(*, user, pk: int) -> dict | None:
    visible, params = visible_models_sql(user, "m")
    rows = fetch(_statements().models + f"m.id = %s AND {visible}", [pk, *params], prepared=True)
    return next(iter(_models(rows).values()), None)


# --- Searches -------------------------------------------------------------------------------


def _page_sql(order: Sequence[str], tiebreak: str) -> str:
    return f" ORDER BY {', '.join([*order, tiebreak])} LIMIT %s OFFSET %s"


NAME_ORDER = ["m.name ASC"]


def model_search(
    *, user, where: Where, order: Sequence[str], offset: int, limit: int, after: tuple[str, int] | None = None
):
    """One page of the visible models matching ``where`` (``search.registered_model_where``):
    ``(models, more, last)``; ``more`` says whether a further page exists, ``last`` is the
    ``(name, id)`` of the page's last model. ``after`` (with ``NAME_ORDER`` only) starts the page
    after that key, through the ``(name, id)`` index, instead of skipping ``offset`` rows."""
    visible, params = visible_models_sql(user, "m")
    condition = f"{visible} AND {where.sql}"
    values = [*params, *where.params]
    if after is not None:
        if list(order) != NAME_ORDER:
            raise ValueError("keyset pages need the name order")
        condition += " AND (m.name, m.id) > (%s, %s)"
        values += list(after)
        offset = 0
    copies = rendered.models()
    statement = _statements().model_keys if copies is not None else _statements().models
    rows = fetch(statement + condition + _page_sql(order, "m.id"), [*values, limit + 1, offset])
    page = rows[:limit]
    last = (page[-1][1], page[-1][0]) if page else None
    if copies is not None:
        return _rendered_models([(row[0], row[2]) for row in page], copies), len(rows) > limit, last
    found = _models(page)
    return [found[row[0]] for row in page], len(rows) > limit, last


def _rendered_models(keys: list[tuple[int, int | None]], copies: rendered.RenderedModels) -> list:
    """The models of ``(pk, revision)`` keys, in order, as encoded JSON: this process's copy where
    it has one at that revision, rendered (and kept) otherwise. A model deleted since the keys
    were read is left out."""
    docs: dict[int, bytes] = {}
    missing = []
    for pk, revision in keys:
        doc = copies.get(pk, revision)
        if doc is None:
            missing.append(pk)
        else:
            docs[pk] = doc
    if missing:
        condition, params = id_in("m.id", missing)
        rows = fetch(_statements().models + condition, params, prepared=len(missing) == 1)
        found, settled = _render_models(rows)
        for pk, data in found.items():
            docs[pk] = doc = orjson.dumps(data)
            if pk in settled:
                copies.put(pk, settled[pk], doc)
    return [orjson.Fragment(docs[pk]) for pk, _revision in keys if pk in docs]


def version_search(*, user, where: Where, order: Sequence[str], offset: int, limit: int):
    """One page of the visible versions matching ``where`` (``search.model_version_where``)."""
    visible, params = visible_models_sql(user, "m")
    sql = _statements().versions + f"{visible} AND {where.sql}" + _page_sql(order, "v.id")
    rows = fetch(sql, [*params, *where.params, limit + 1, offset])
    return [_version(row) for row in rows[:limit]], len(rows) > limit


# --- Instances for writes -------------------------------------------------------------------


def model_for_write(*, user, name: str) -> RegisteredModel | None:
    """The visible model ``name`` (any case) as an instance, for a service to change, or None."""
    sql = _statements()
    visible, params = visible_models_sql(user, "m")
    rows = fetch(sql.model_for_write + visible, [name, *params], prepared=True)
    return sql.model_columns.build(rows[0]) if rows else None


def version_for_write(*, user, name: str, number: int) -> tuple[RegisteredModel, ModelVersion] | None:
    """The visible version ``number`` of model ``name`` and that model, as instances, or None."""
    sql = _statements()
    visible, params = visible_models_sql(user, "m")
    rows = fetch(sql.version_for_write + visible, [name, number, *params], prepared=True)
    if not rows:
        return None
    version = sql.version_columns.build(rows[0])
    version.model = model = sql.model_columns.build(rows[0], sql.version_columns.width)
    return model, version
