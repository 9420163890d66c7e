"""Helpers for the few hand-written queries on hot paths (token lookups, the MLflow API's reads).

The ORM compiles a query on every call: for a primary-key lookup that costs more than the
database's answer. Hot paths write their SQL once and read the rows back through these helpers,
which keep the ORM's column types (``ModelColumns`` applies the same value converters as a
queryset) and portable parameter lists (``id_in``). Everything here runs on SQLite and PostgreSQL.
"""

# ruff: noqa: S608 - SQL fragments built from model table and column names; values are parameters.

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import Model

# SQLite's default limit on host parameters is 32,766 (999 before 3.32): stay far below it.
_SQLITE_CHUNK = 900


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    return qn(model._meta.db_table)


def epoch_ms(column: str) -> str:
    """SQL for ``column`` (a timestamp) in milliseconds since the epoch, where the database can
    say it: PostgreSQL (exact, ``EXTRACT`` is numeric). Elsewhere the column itself, for
    :func:`ms`. Turning timestamps into Python datetimes costs ~5 us each in psycopg, the
    largest part of reading a page of 100 models."""
    if connection.vendor == "postgresql":
        return f"FLOOR(EXTRACT(EPOCH FROM {column}) * 1000)::bigint"
    return column


def ms(value: datetime | int | None) -> int:
    """Milliseconds since the epoch; naive values (SQLite's raw rows) are UTC, as Django stores them."""
    if value is None:
        return 0
    if isinstance(value, int):  # already converted by ``epoch_ms``
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class ModelColumns:
    """All concrete columns of ``model`` under a table alias, read back into an instance.

    ``sql`` is the SELECT list; ``build(row, start)`` makes the instance from ``row[start:]``
    through the ORM's converters (JSON, dates on SQLite, ...) and ``Model.from_db``, so the
    instance is exactly what a queryset would have returned.
    """

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f"{alias}.{qn(f.column)}" for f in self.fields)
        self.width = len(self.fields)
        self._alias = alias
        self._converters: dict[str, list] = {}

    def _converters_for_connection(self) -> list:
        key = connection.alias
        found = self._converters.get(key)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self._alias)
                chain = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if chain:
                    found.append((index, col, chain))
            self._converters[key] = found
        return found

    def build(self, row: Sequence, start: int = 0) -> Model:
        values = list(row[start : start + self.width])
        for index, col, chain in self._converters_for_connection():
            value = values[index]
            for converter in chain:
                value = converter(value, col, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def id_in(column: str, ids: Sequence[int]) -> tuple[str, list]:
    """``column IN (ids)`` as SQL and parameters: one array parameter on PostgreSQL (any number
    of ids), placeholders elsewhere (callers chunk with :func:`chunks`). One id is ``column = %s``:
    PostgreSQL re-plans a prepared statement with an array parameter on every run (its generic
    plan looks costlier), which was 0.8 ms of a get model's 1 ms in the database."""
    if len(ids) == 1:
        return f"{column} = %s", [int(ids[0])]
    if connection.vendor == "postgresql":  # as text: psycopg's list dumper checks every element
        return f"{column} = ANY(%s::bigint[])", ["{" + ",".join(str(int(pk)) for pk in ids) + "}"]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    """``ids`` in pieces that :func:`id_in` can send: whole on PostgreSQL."""
    if connection.vendor == "postgresql" or len(ids) <= _SQLITE_CHUNK:
        if ids:
            yield ids
        return
    for start in range(0, len(ids), _SQLITE_CHUNK):
        yield ids[start : start + _SQLITE_CHUNK]


def json_pairs(first: str, second: str, source: str, order: str) -> str:
    """A correlated subquery giving the rows of ``source`` (``FROM ... WHERE ...``) as one JSON
    array of ``[first, second]`` pairs ordered by ``order``. Select it through
    :func:`json_columns`. Children (tags, aliases) then come with their parent's row instead of
    in a query of their own."""
    if connection.vendor == "postgresql":
        return f"(SELECT json_agg(json_build_array({first}, {second}) ORDER BY {order}) {source})"
    return (
        "(SELECT json_group_array(json_array(p.a, p.b)) FROM "
        f"(SELECT {first} AS a, {second} AS b {source} ORDER BY {order}) p)"
    )


def json_columns(*subqueries: str) -> str:
    """Several :func:`json_pairs` subqueries as one JSON text column, so a row costs one parse;
    read it back with :func:`json_row`."""
    if connection.vendor == "postgresql":
        return f"json_build_array({', '.join(subqueries)})::text"
    return f"json_array({', '.join(f'json({q})' for q in subqueries)})"


def json_row(value: str) -> list[list]:
    """The lists of a :func:`json_columns` column (an empty list where PostgreSQL says NULL)."""
    return [item or [] for item in orjson.loads(value)]


def _prepared_cursor():
    """A cursor that binds on the server (PostgreSQL), so psycopg prepares each statement after its
    fifth use on a connection (``prepare_threshold``) and PostgreSQL stops re-planning it.
    ``DB_PREPARED_STATEMENTS=0`` turns it off (PgBouncer before 1.21 in transaction mode cannot
    keep prepared statements)."""
    if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
        return connection.cursor()
    import psycopg

    connection.ensure_connection()
    # Django's wrapper (query logging, execute wrappers, error translation) around a
    # server-binding cursor on the same connection and transaction.
    return connection._prepare_cursor(psycopg.Cursor(connection.connection))


def fetch(sql: str, params: Sequence, *, prepared: bool = False) -> list[tuple]:
    """The rows of ``sql``. ``prepared`` only for lookups whose best plan does not depend on the
    values (a unique key, a primary key): planning was half of the database's time for a get.
    Never for searches: after five runs PostgreSQL may keep one generic plan for every value,
    and a tag search planned for a rare value walks every row for a common one (measured: 5 ms
    became 400 ms)."""
    with _prepared_cursor() if prepared else connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_each(statements: Sequence[tuple[str, Sequence]], *, prepared: bool = False) -> list[list[tuple]]:
    """The rows of each of several statements that do not depend on one another, in order.

    On PostgreSQL they are sent together in pipeline mode and answered together: one round trip
    instead of one each (a lookup and the policy it is checked against, say). The first error
    is raised as :func:`fetch` would raise it, and the statements after it are not run.
    ``prepared`` as for :func:`fetch`, for all of them."""
    if connection.vendor != "postgresql" or len(statements) < 2:
        return [fetch(sql, params, prepared=prepared) for sql, params in statements]
    cursors = [_prepared_cursor() if prepared else connection.cursor() for _ in statements]
    try:
        # Errors surface when the pipeline syncs, on leaving the block: Django translates them.
        with connection.wrap_database_errors, connection.connection.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def execute(sql: str, params: Sequence, *, prepared: bool = False) -> int:
    """Run ``sql``, which returns no rows (an ``UPDATE``); the number of rows it changed.
    ``prepared`` as for :func:`fetch`."""
    with _prepared_cursor() if prepared else connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


class Inserter:
    """``INSERT`` of ``model`` instances in one hand-written statement, for the hottest writes
    (audit records, alias history). The values are those the ORM would send (each field's
    ``pre_save`` and ``get_db_prep_save``: ``auto_now_add``, JSON, foreign keys by id), and the
    instances get their primary keys back as after ``save()``. No signals are sent: nothing in
    the project listens to these models'. Compiling the ORM's insert cost more than the
    database's answer (an audit record: 0.5 ms of Python for a 0.1 ms insert)."""

    ROWS = 50

    def __init__(self, model: type[Model], also: str = "") -> None:
        """``also``: an SQL expression returned with each row (``RETURNING id, <also>``), so a
        question the caller would ask next (is there an active webhook?) rides along with the
        insert instead of costing a round trip of its own; :meth:`insert` returns its values."""
        self.model = model
        pk = model._meta.pk
        self.fields = [f for f in model._meta.concrete_fields if f is not pk]
        columns = ", ".join(qn(f.column) for f in self.fields)
        self._head = f"INSERT INTO {table(model)} ({columns}) VALUES "
        self._row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self._tail = f" RETURNING {qn(pk.column)}" + (f", {also}" if also else "")
        self._sql: dict[int, str] = {}

    def _statement(self, count: int) -> str:
        sql = self._sql.get(count)
        if sql is None:
            sql = self._sql[count] = self._head + ", ".join([self._row] * count) + self._tail
        return sql

    def insert(self, objs: Sequence[Model]) -> list:
        """Insert ``objs`` (new instances of the model) in order, up to ``ROWS`` per statement
        (far below SQLite's and PostgreSQL's limits on parameters); statements of up to eight
        rows are prepared (an insert's plan does not depend on its values). Returns the value of
        ``also`` for each row (nothing without ``also``)."""
        also = []
        for start in range(0, len(objs), self.ROWS):
            batch = objs[start : start + self.ROWS]
            params = [
                field.get_db_prep_save(field.pre_save(obj, True), connection)
                for obj in batch
                for field in self.fields
            ]
            rows = fetch(self._statement(len(batch)), params, prepared=len(batch) <= 8)
            for obj, (pk, *extra) in zip(batch, rows, strict=True):
                obj.pk = pk
                obj._state.adding, obj._state.db = False, connection.alias
                also.extend(extra)
        return also


@cache
def inserter(model: type[Model], also: str = "") -> Inserter:
    """``model``'s :class:`Inserter` (returning ``also``), built once."""
    return Inserter(model, also)
