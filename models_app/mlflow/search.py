"""MLflow's search grammar, parsed here and compiled to SQL conditions (indexed).

``name LIKE 'churn%' AND tags.team = 'risk' AND version_number >= 3``: clauses joined by AND,
each ``<identifier> <comparator> <value>``. Identifiers are ``name``/``attribute.<key>`` or
``tag.<key>``/``tags.<key>`` (keys with odd characters in backticks or double quotes). Values are
quoted strings, numbers for numeric attributes, or a ``('a', 'b')`` tuple for IN. ``=``, ``!=``
and ``LIKE`` are case-sensitive, ``ILIKE`` is not (as MLflow forces on every database).

Nothing is filtered in Python: each clause becomes a parameterized SQL condition on the aliases
of ``models_app.mlflow.reads`` (tags as an ``EXISTS`` subquery served by the ``(key, value)``
indexes of migration ``0007_mlflow_indexes``), so a search is one query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import CharField, Lookup, Q, TextField

from models_app.mlflow.errors import invalid
from registry_project.rawsql import qn, table

PROMPT_TAG = "mlflow.prompt.is_prompt"
# Tag values are indexed by their first characters (values may be long; btree rows may not).
TAG_VALUE_PREFIX = 100

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<bt>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?(?![\w.]))
      | (?P<op>!=|<>|>=|<=|=|>|<|\(|\)|,)
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    kind: str  # "attribute" or "tag"
    key: str
    comparator: str
    value: object  # str, int/float, or a tuple of str


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise invalid(f"Invalid filter string '{text}': could not parse '{text[pos:].strip()[:40]}'.")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(raw: str) -> str:
    quote = raw[0]
    body = raw[1:-1]
    if quote == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def parse(text: str | None) -> list[Clause]:
    """The clauses of a filter string; a 400 (``INVALID_PARAMETER_VALUE``) for anything else."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0

    def peek(offset: int = 0) -> tuple[str, str] | None:
        return tokens[i + offset] if i + offset < len(tokens) else None

    while i < len(tokens):
        kind, raw = tokens[i]
        # --- identifier
        if kind != "word":
            raise invalid(f"Invalid filter string '{text}': expected an attribute or tag at '{raw}'.")
        i += 1
        lowered = raw.lower()
        if lowered in ("or",):
            raise invalid("Invalid clause(s) in filter string: OR")
        prefix, _, key = raw.partition(".")
        if not _:
            ident_kind, key = "attribute", raw
        elif prefix.lower() in ("tag", "tags"):
            ident_kind = "tag"
        elif prefix.lower() in ("attribute", "attributes", "attr"):
            ident_kind = "attribute"
        else:
            ident_kind, key = "attribute", raw
        if not key:  # tags.`my key` / tags."my key"
            nxt = peek()
            if nxt is None or nxt[0] not in ("bt", "str"):
                raise invalid(f"Invalid filter string '{text}': expected a key after '{raw}'.")
            key = nxt[1][1:-1]
            i += 1
        # --- comparator
        nxt = peek()
        if nxt is None:
            raise invalid(f"Invalid filter string '{text}': '{raw}' has no comparator.")
        if nxt[0] == "op" and nxt[1] in ("=", "!=", "<>", ">", ">=", "<", "<="):
            comparator = "!=" if nxt[1] == "<>" else nxt[1]
            i += 1
        elif nxt[0] == "word" and nxt[1].upper() in ("LIKE", "ILIKE", "IN"):
            comparator = nxt[1].upper()
            i += 1
        elif nxt[0] == "word" and nxt[1].upper() == "NOT" and (peek(1) or ("", ""))[1].upper() == "IN":
            comparator = "NOT IN"
            i += 2
        elif nxt[0] == "word" and nxt[1].upper() == "IS":
            raise invalid(f"Invalid comparator 'IS' in filter string '{text}': IS NULL is not supported.")
        else:
            raise invalid(f"Invalid comparator '{nxt[1]}' in filter string '{text}'.")
        # --- value
        nxt = peek()
        if nxt is None:
            raise invalid(f"Invalid filter string '{text}': '{raw} {comparator}' has no value.")
        if comparator in ("IN", "NOT IN"):
            if nxt != ("op", "("):
                raise invalid(f"Expected a tuple such as ('a', 'b') after {comparator} in '{text}'.")
            i += 1
            items: list[str] = []
            while True:
                item = peek()
                if item is None or item[0] != "str":
                    raise invalid(f"Expected quoted strings in the {comparator} tuple of '{text}'.")
                items.append(_unquote(item[1]))
                i += 1
                sep = peek()
                if sep == ("op", ","):
                    i += 1
                    continue
                if sep == ("op", ")"):
                    i += 1
                    break
                raise invalid(f"Unclosed {comparator} tuple in filter string '{text}'.")
            value: object = tuple(items)
        elif nxt[0] == "str":
            value = _unquote(nxt[1])
            i += 1
        elif nxt[0] == "num":
            value = float(nxt[1]) if "." in nxt[1] else int(nxt[1])
            i += 1
        else:
            raise invalid(f"Invalid value '{nxt[1]}' in filter string '{text}': quote strings.")
        clauses.append(Clause(ident_kind, key, comparator, value))
        # --- conjunction
        nxt = peek()
        if nxt is None:
            break
        if nxt[0] == "word" and nxt[1].upper() == "AND":
            i += 1
            if peek() is None:
                raise invalid(f"Invalid filter string '{text}': nothing after AND.")
            continue
        if nxt[0] == "word" and nxt[1].upper() == "OR":
            raise invalid("Invalid clause(s) in filter string: OR")
        raise invalid(f"Invalid filter string '{text}': expected AND at '{nxt[1]}'.")
    return clauses


# --- LIKE / ILIKE with MLflow's semantics ------------------------------------------------------


def _like_to_glob(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def _like(column: str, op: str, rhs: str = "%s", vendor: str | None = None) -> tuple[str, object]:
    """SQL for ``column LIKE/ILIKE rhs`` with MLflow's semantics on this database, and the
    function that turns the pattern into the parameter. Shared by the SQL compiler below and the
    ORM lookups of the tracking searches."""
    vendor = vendor or connection.vendor
    if op == "LIKE":
        if vendor == "sqlite":  # SQLite's LIKE ignores case; GLOB does not
            return f"{column} GLOB {rhs}", _like_to_glob
        return f"{column} LIKE {rhs}", str
    if vendor == "postgresql":
        return f"{column} ILIKE {rhs}", str
    return f"UPPER({column}) LIKE UPPER({rhs})", str


# --- Compiling string clauses to ORM filters (tracking searches) ------------------------------


class _MlflowPattern(Lookup):
    operator = ""

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        sql, to_param = _like(lhs, self.operator, rhs, connection.vendor)
        return sql, [*lhs_params, *[to_param(p) for p in rhs_params]]


class MlflowLike(_MlflowPattern):
    """``LIKE`` with the pattern as given (``%``, ``_``), case-sensitive on every database."""

    lookup_name = "mlflow_like"
    operator = "LIKE"


class MlflowILike(_MlflowPattern):
    """``ILIKE``: case-insensitive pattern match."""

    lookup_name = "mlflow_ilike"
    operator = "ILIKE"


for _field in (CharField, TextField):
    _field.register_lookup(MlflowLike)
    _field.register_lookup(MlflowILike)


_STRING_OPS = {"=": "exact", "LIKE": "mlflow_like", "ILIKE": "mlflow_ilike"}


def string_q(field: str, clause: Clause, allow_in: bool) -> Q:
    """A string clause as an ORM filter: the tracking searches (experiments, logged models) run on
    querysets; the registry searches use the SQL form below."""
    value, op = clause.value, clause.comparator
    if op in ("IN", "NOT IN"):
        if not allow_in:
            raise invalid(f"Invalid comparator '{op}' for attribute '{clause.key}'.")
        q = Q(**{f"{field}__in": list(value)})
        return ~q if op == "NOT IN" else q
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for attribute '{clause.key}': quote it as a string.")
    if op == "!=":
        return ~Q(**{f"{field}__exact": value})
    if op not in _STRING_OPS:
        raise invalid(f"Invalid comparator '{op}' for string attribute '{clause.key}'.")
    return Q(**{f"{field}__{_STRING_OPS[op]}": value})


# --- Compiling clauses to SQL ------------------------------------------------------------------
#
# Conditions are written on the aliases of ``models_app.mlflow.reads``: ``m`` (models), ``v``
# (versions), ``r`` (the version's training run, LEFT JOINed); every value is a parameter.


@dataclass(frozen=True)
class Where:
    sql: str
    params: list


def _string_sql(column: str, clause: Clause, *, allow_in: bool, nullable: bool = False) -> tuple[str, list]:
    value, op = clause.value, clause.comparator
    if op in ("IN", "NOT IN"):
        if not allow_in:
            raise invalid(f"Invalid comparator '{op}' for attribute '{clause.key}'.")
        items = list(value)
        if not items:
            return ("1 = 0" if op == "IN" else "1 = 1"), []
        placeholders = ", ".join(["%s"] * len(items))
        if op == "IN":
            return f"{column} IN ({placeholders})", items
        absent = f"{column} IS NULL OR " if nullable else ""
        return f"({absent}{column} NOT IN ({placeholders}))", items
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for attribute '{clause.key}': quote it as a string.")
    if op == "=":
        return f"{column} = %s", [value]
    if op == "!=":
        absent = f"{column} IS NULL OR " if nullable else ""
        return f"({absent}{column} <> %s)", [value]
    if op in ("LIKE", "ILIKE"):
        sql, to_param = _like(column, op)
        return sql, [to_param(value)]
    raise invalid(f"Invalid comparator '{op}' for string attribute '{clause.key}'.")


def _tag_sql(tag_table: str, owner: str, clause: Clause) -> tuple[str, list]:
    """EXISTS over the tag table; a clause on a tag matches only rows that have the tag.

    The one exception is MLflow's own prompt marker: ``tags.mlflow.prompt.is_prompt != 'true'``
    (which the client appends to every model search) also matches rows without the tag.
    """
    op, value = clause.comparator, clause.value
    if op not in ("=", "!=", "LIKE", "ILIKE"):
        raise invalid(f"Invalid comparator '{op}' for tag '{clause.key}': use =, !=, LIKE or ILIKE.")
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for tag '{clause.key}': quote it as a string.")
    head = f"SELECT 1 FROM {tag_table} t WHERE t.{owner} AND t.{qn('key')} = %s AND "  # noqa: S608
    if op == "!=" and clause.key == PROMPT_TAG:
        return f"NOT EXISTS ({head}t.value = %s)", [clause.key, value]
    if op == "=":
        # The prefix comparison lets the (key, left(value)) index find the rows.
        n = TAG_VALUE_PREFIX  # a literal, as in the index expression
        prefix = f"LEFT(t.value, {n})" if connection.vendor == "postgresql" else f"SUBSTR(t.value, 1, {n})"
        return f"EXISTS ({head}{prefix} = %s AND t.value = %s)", [clause.key, value[:n], value]
    if op == "!=":
        return f"EXISTS ({head}t.value <> %s)", [clause.key, value]
    sql, to_param = _like("t.value", op)
    return f"EXISTS ({head}{sql})", [clause.key, to_param(value)]


def _join(parts: list[tuple[str, list]]) -> Where:
    if not parts:
        return Where("1 = 1", [])
    return Where(" AND ".join(sql for sql, _ in parts), [p for _, params in parts for p in params])


def registered_model_where(clauses: list[Clause]) -> Where:
    """Filter for ``registered-models/search`` (on ``m``): attribute ``name`` and tags."""
    from models_app.models import ModelTag

    parts = []
    for clause in clauses:
        if clause.kind == "tag":
            parts.append(_tag_sql(table(ModelTag), "model_id = m.id", clause))
        elif clause.key == "name":
            parts.append(_string_sql("m.name", clause, allow_in=True))
        else:
            raise invalid(f"Invalid attribute key '{clause.key}' specified. Valid keys are '{{'name'}}'")
    return _join(parts)


_MV_ATTRIBUTES = {"name": "m.name", "run_id": "r.external_id", "source_path": "v.source"}
_NUMERIC_OPS = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def model_version_where(clauses: list[Clause]) -> Where:
    """Filter for ``model-versions/search`` (on ``v``, ``m``, ``r``): name, run_id, source_path,
    version_number, tags."""
    from models_app.models import VersionTag

    parts = []
    for clause in clauses:
        if clause.kind == "tag":
            parts.append(_tag_sql(table(VersionTag), "version_id = v.id", clause))
        elif clause.key in _MV_ATTRIBUTES:
            parts.append(
                _string_sql(
                    _MV_ATTRIBUTES[clause.key],
                    clause,
                    allow_in=clause.key in ("name", "run_id"),
                    nullable=clause.key == "run_id",
                )
            )
        elif clause.key == "version_number":
            value = clause.value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            if not isinstance(value, int):
                raise invalid(f"Invalid value for numeric attribute 'version_number': {clause.value!r}")
            if clause.comparator not in _NUMERIC_OPS:
                raise invalid(
                    f"Invalid comparator '{clause.comparator}' for numeric attribute 'version_number'."
                )
            parts.append((f"v.version {_NUMERIC_OPS[clause.comparator]} %s", [value]))
        else:
            raise invalid(
                f"Invalid attribute key '{clause.key}' specified. Valid keys are "
                "'{'name', 'run_id', 'source_path', 'version_number'}'"
            )
    return _join(parts)


def order_by(values: list[str], allowed: dict[str, str], default: list[str]) -> list[str]:
    """``["name ASC", "last_updated_timestamp DESC"]`` → SQL ordering terms (``allowed`` maps
    MLflow's keys to columns), with MLflow's checks."""
    if not values:
        return list(default)
    ordering, seen = [], set()
    for raw in values:
        parts = raw.strip().split()
        if not parts or len(parts) > 2:
            raise invalid(f"Invalid order_by clause '{raw}'.")
        key = parts[0].removeprefix("attribute.")
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if key not in allowed or direction not in ("ASC", "DESC"):
            raise invalid(
                f"Invalid order by key '{parts[0]}' specified. Valid keys are {sorted(set(allowed))}"
                if key not in allowed
                else f"Invalid order_by direction '{parts[1]}' in '{raw}': use ASC or DESC."
            )
        column = allowed[key]
        if column in seen:
            raise invalid(f"`order_by` contains duplicate fields: {values}")
        seen.add(column)
        ordering.append(f"{column} {direction}")
    return ordering
