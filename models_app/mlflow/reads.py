"""The Model Registry RPCs' reads: MLflow's JSON straight from hand-written SQL.

This is the MLflow API's hot path (the client reads far more than it writes), so it skips the
ORM's per-call query compilation and model instances (see ``registry_project.rawsql``):

- a get is two queries after the token lookup for a version (the version with its model,
  creator and run; then its tags and aliases), three for a model (the model; its latest version
  per stage; the tags and aliases of both in one UNION);
- a search page takes its ids from the ORM (the search grammar compiles to a ``Q``) and reads
  them back here with the same two or three queries, whatever the page size.

Visibility is ``selectors.visible_models_sql``, the catalog's rule written as SQL; functions
that take ids trust the caller to have scoped them (search ids come from the selectors).
"""

# ruff: noqa: S608 - table and column names come from the models; values are always parameters.

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import connection

from lineage_app.models import TrainingRun
from models_app.mlflow.encode import STAGE_TO_MLFLOW, STATUS_TO_MLFLOW
from models_app.mlflow.search import Where
from models_app.models import ModelAlias, ModelTag, ModelVersion, RegisteredModel, VersionTag
from models_app.selectors import visible_models_sql
from registry_project.rawsql import chunks, epoch_ms, fetch, id_in, ms, qn, table

_MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")
_STAGE_ORDER = {stage: index for index, stage in enumerate(STAGE_TO_MLFLOW)}


class _Sql:
    """The statements, built once the apps are loaded (table names come from the models)."""

    def __init__(self) -> None:
        user = get_user_model()
        username = qn(user._meta.get_field(user.USERNAME_FIELD).column)
        columns = (
            "SELECT v.id, v.model_id, v.version, v.status, v.status_message, v.stage, v.description, "
            f"v.source, {epoch_ms('v.created_at')}, {epoch_ms('v.updated_at')}, m.name, u.{username}, "
            "r.external_id FROM "
        )
        joins = (
            f"JOIN {table(RegisteredModel)} m ON m.id = v.model_id "
            f"LEFT JOIN {table(user)} u ON u.id = v.created_by_id "
            f"LEFT JOIN {table(TrainingRun)} r ON r.version_id = v.id "
        )
        self.versions = f"{columns}{table(ModelVersion)} v {joins}WHERE "
        # The highest version per model and stage: one grouped pass over the models' versions,
        # then primary-key joins (a correlated MAX per version row cost ~2 ms a page).
        self.latest = (
            f"{columns}(SELECT model_id, stage, MAX(version) AS top FROM {table(ModelVersion)} "
            "WHERE {models} GROUP BY model_id, stage) t "
            f"JOIN {table(ModelVersion)} v ON v.model_id = t.model_id AND v.version = t.top {joins}"
            "WHERE {outer}"  # the models again, or the planner may hash-join every version
        )
        self.models = (
            f"SELECT m.id, m.name, m.description, {epoch_ms('m.created_at')}, {epoch_ms('m.updated_at')}, "
            f"u.{username} "
            f"FROM {table(RegisteredModel)} m LEFT JOIN {table(user)} u ON u.id = m.created_by_id WHERE "
        )
        self.alias_of_model = (
            f"v.id = (SELECT a.version_id FROM {table(ModelAlias)} a "
            "WHERE a.model_id = m.id AND a.alias = %s)"
        )
        key = qn("key")
        self.model_tags = f"SELECT 0, model_id, {key}, value FROM {table(ModelTag)} WHERE "
        self.model_aliases = (
            # The number by a scalar subquery: a join let the planner scan every version.
            f"SELECT 1, a.model_id, a.alias, CAST((SELECT v.version FROM {table(ModelVersion)} v "
            f"WHERE v.id = a.version_id) AS TEXT) FROM {table(ModelAlias)} a WHERE "
        )
        self.version_tags = f"SELECT 2, version_id, {key}, value FROM {table(VersionTag)} WHERE "
        self.version_aliases = f"SELECT 3, version_id, alias, '' FROM {table(ModelAlias)} WHERE "


_sql: _Sql | None = None


def _statements() -> _Sql:
    global _sql
    if _sql is None:
        _sql = _Sql()
    return _sql


@dataclass
class _Labels:
    """Tags and aliases by owner id (kinds 0-3 of the UNION in ``_labels``)."""

    by_kind: tuple[dict, dict, dict, dict] = field(default_factory=lambda: ({}, {}, {}, {}))

    def add(self, kind: int, owner: int, key: str, value: str) -> None:
        self.by_kind[kind].setdefault(owner, []).append((key, value))

    def get(self, kind: int, owner: int) -> list[tuple[str, str]]:
        return self.by_kind[kind].get(owner, [])


def _labels(model_ids: Sequence[int], version_ids: Sequence[int]) -> _Labels:
    """Tags and aliases of the models and of the versions, in one UNION query (tags by key)."""
    sql = _statements()
    labels = _Labels()
    if connection.vendor == "postgresql" or len(model_ids) + len(version_ids) <= 450:
        batches = [(model_ids, version_ids)]
    else:
        batches = [(c, []) for c in chunks(model_ids)] + [([], c) for c in chunks(version_ids)]
    for mids, vids in batches:
        parts: list[str] = []
        params: list = []
        for ids, column, head in (
            (mids, "model_id", sql.model_tags),
            (mids, "a.model_id", sql.model_aliases),
            (vids, "version_id", sql.version_tags),
            (vids, "version_id", sql.version_aliases),
        ):
            if ids:
                condition, values = id_in(column, ids)
                parts.append(head + condition)
                params += values
        if parts:
            for kind, owner, key, value in fetch(" UNION ALL ".join(parts) + " ORDER BY 1, 2, 3", params):
                labels.add(kind, owner, key, value)
    return labels


# --- Versions -------------------------------------------------------------------------------


def _version(row: Sequence, labels: _Labels) -> dict:
    (pk, _model_id, number, status, status_message, stage, description, source, created, updated, name,
     username, run_id) = row  # fmt: skip
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
    tags = labels.get(2, pk)
    if tags:
        data["tags"] = [{"key": key, "value": value} for key, value in tags]
    aliases = labels.get(3, pk)
    if aliases:
        data["aliases"] = sorted(alias for alias, _ in aliases)
    if match := _MODEL_ID.match(source or ""):
        data["model_id"] = match[1]
    return data


def _versions(where: str, params: list) -> list[dict]:
    rows = fetch(_statements().versions + where, params)
    labels = _labels((), [row[0] for row in rows])
    return [_version(row, labels) for row in rows]


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
        rows += fetch(_statements().latest.format(models=condition, outer=outer), params + outer_params)
    rows.sort(key=lambda row: (_STAGE_ORDER.get(row[5], len(_STAGE_ORDER)), row[2]))
    return rows


def latest_versions(*, model_id: int, stages: Sequence[str] | None = None) -> list[dict]:
    """The highest version of the (visible) model in each stage, or only in ``stages``."""
    if stages is not None and not stages:
        return []
    rows = _latest_rows([model_id], stages)
    labels = _labels((), [row[0] for row in rows])
    return [_version(row, labels) for row in rows]


# --- Registered models ----------------------------------------------------------------------


def _models(rows: list[tuple]) -> dict[int, dict]:
    """MLflow's RegisteredModel for each model row, with latest versions, tags and aliases."""
    model_ids = [row[0] for row in rows]
    latest = _latest_rows(model_ids, None)
    labels = _labels(model_ids, [row[0] for row in latest])
    latest_by_model: dict[int, list] = {}
    for row in latest:
        latest_by_model.setdefault(row[1], []).append(_version(row, labels))
    found = {}
    for pk, name, description, created, updated, username in rows:
        data = {"name": name, "creation_timestamp": ms(created), "last_updated_timestamp": ms(updated)}
        if description:
            data["description"] = description
        if username:
            data["user_id"] = username
        if pk in latest_by_model:
            data["latest_versions"] = latest_by_model[pk]
        tags = labels.get(0, pk)
        if tags:
            data["tags"] = [{"key": key, "value": value} for key, value in tags]
        aliases = labels.get(1, pk)
        if aliases:
            data["aliases"] = [{"alias": alias, "version": version} for alias, version in sorted(aliases)]
        found[pk] = data
    return found


def model_get(*, user, name: str) -> dict | None:
    """The visible model called ``name`` (any case), or None."""
    visible, params = visible_models_sql(user, "m")
    rows = fetch(_statements().models + f"UPPER(m.name) = UPPER(%s) AND {visible}", [name, *params])
    return next(iter(_models(rows).values()), None)


def model_by_id(*, user, pk: int) -> dict | None:
    visible, params = visible_models_sql(user, "m")
    rows = fetch(_statements().models + f"m.id = %s AND {visible}", [pk, *params])
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
    rows = fetch(_statements().models + condition + _page_sql(order, "m.id"), [*values, limit + 1, offset])
    page = rows[:limit]
    found = _models(page)
    last = (page[-1][1], page[-1][0]) if page else None
    return [found[row[0]] for row in page], len(rows) > limit, last


def version_search(*, user, where: Where, order: Sequence[str], offset: int, limit: int):
    """One page of the visible versions matching ``where`` (``search.model_version_where``)."""
    visible, params = visible_models_sql(user, "m")
    sql = _statements().versions + f"{visible} AND {where.sql}" + _page_sql(order, "v.id")
    rows = fetch(sql, [*params, *where.params, limit + 1, offset])
    page = rows[:limit]
    labels = _labels((), [row[0] for row in page])
    return [_version(row, labels) for row in page], len(rows) > limit
