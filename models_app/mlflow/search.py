"""MLflow's search grammar, parsed here and compiled to Django ORM filters (indexed SQL).

``name LIKE 'churn%' AND tags.team = 'risk' AND version_number >= 3``: clauses joined by AND,
each ``<identifier> <comparator> <value>``. Identifiers are ``name``/``attribute.<key>`` or
``tag.<key>``/``tags.<key>`` (keys with odd characters in backticks or double quotes). Values are
quoted strings, numbers for numeric attributes, or a ``('a', 'b')`` tuple for IN. ``=``, ``!=``
and ``LIKE`` are case-sensitive, ``ILIKE`` is not (as MLflow forces on every database).

Nothing is filtered in Python: each clause becomes a ``Q`` (tags as an ``EXISTS`` subquery
served by the ``(key, value)`` indexes of migration ``0007_mlflow_indexes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import CharField, Exists, Lookup, OuterRef, Q, TextField
from django.db.models.functions import Left

from models_app.mlflow.errors import invalid

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


# --- LIKE / ILIKE lookups with MLflow's semantics ---------------------------------------------


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


class MlflowLike(Lookup):
    """``LIKE`` with the pattern as given (``%``, ``_``), case-sensitive on every database."""

    lookup_name = "mlflow_like"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite":  # SQLite's LIKE ignores case; GLOB does not
            return f"{lhs} GLOB {rhs}", [*lhs_params, *[_like_to_glob(p) for p in rhs_params]]
        return f"{lhs} LIKE {rhs}", [*lhs_params, *rhs_params]


class MlflowILike(Lookup):
    """``ILIKE``: case-insensitive pattern match."""

    lookup_name = "mlflow_ilike"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]
        return f"UPPER({lhs}) LIKE UPPER({rhs})", [*lhs_params, *rhs_params]


for _field in (CharField, TextField):
    _field.register_lookup(MlflowLike)
    _field.register_lookup(MlflowILike)


# --- Compiling clauses ------------------------------------------------------------------------

_STRING_OPS = {"=": "exact", "LIKE": "mlflow_like", "ILIKE": "mlflow_ilike"}
_NUMERIC_OPS = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def _string_q(field: str, clause: Clause, allow_in: bool) -> Q:
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


def _tag_q(tag_model, owner_field: str, clause: Clause) -> Q:
    """EXISTS over the tag table; a clause on a tag matches only rows that have the tag.

    The one exception is MLflow's own prompt marker: ``tags.mlflow.prompt.is_prompt != 'true'``
    (which the client appends to every model search) also matches rows without the tag.
    """
    op, value = clause.comparator, clause.value
    if op not in ("=", "!=", "LIKE", "ILIKE"):
        raise invalid(f"Invalid comparator '{op}' for tag '{clause.key}': use =, !=, LIKE or ILIKE.")
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for tag '{clause.key}': quote it as a string.")
    tags = tag_model.objects.filter(**{owner_field: OuterRef("pk")}, key=clause.key)
    if op == "!=" and clause.key == PROMPT_TAG:
        return ~Exists(tags.filter(value=value))
    if op == "=":
        # The prefix comparison lets the (key, left(value)) index find the rows.
        tags = tags.alias(_vp=Left("value", TAG_VALUE_PREFIX)).filter(
            _vp=value[:TAG_VALUE_PREFIX], value=value
        )
    elif op == "!=":
        tags = tags.exclude(value=value)
    else:
        tags = tags.filter(**{f"value__{_STRING_OPS[op]}": value})
    return Q(Exists(tags))


def registered_model_q(clauses: list[Clause]) -> Q:
    """Filter for ``registered-models/search``: attribute ``name`` and tags."""
    from models_app.models import ModelTag

    q = Q()
    for clause in clauses:
        if clause.kind == "tag":
            q &= _tag_q(ModelTag, "model", clause)
        elif clause.key == "name":
            q &= _string_q("name", clause, allow_in=True)
        else:
            raise invalid(f"Invalid attribute key '{clause.key}' specified. Valid keys are '{{'name'}}'")
    return q


_MV_ATTRIBUTES = {"name": "model__name", "run_id": "training_run__external_id", "source_path": "source"}


def model_version_q(clauses: list[Clause]) -> Q:
    """Filter for ``model-versions/search``: name, run_id, source_path, version_number, tags."""
    from models_app.models import VersionTag

    q = Q()
    for clause in clauses:
        if clause.kind == "tag":
            q &= _tag_q(VersionTag, "version", clause)
        elif clause.key in _MV_ATTRIBUTES:
            q &= _string_q(_MV_ATTRIBUTES[clause.key], clause, allow_in=clause.key in ("name", "run_id"))
        elif clause.key == "version_number":
            value = clause.value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            if not isinstance(value, int):
                raise invalid(f"Invalid value for numeric attribute 'version_number': {clause.value!r}")
            if clause.comparator == "!=":
                q &= ~Q(version=value)
            elif clause.comparator in _NUMERIC_OPS:
                q &= Q(**{f"version__{_NUMERIC_OPS[clause.comparator]}": value})
            else:
                raise invalid(
                    f"Invalid comparator '{clause.comparator}' for numeric attribute 'version_number'."
                )
        else:
            raise invalid(
                f"Invalid attribute key '{clause.key}' specified. Valid keys are "
                "'{'name', 'run_id', 'source_path', 'version_number'}'"
            )
    return q


def order_by(values: list[str], allowed: dict[str, str], default: list[str]) -> list[str]:
    """``["name ASC", "last_updated_timestamp DESC"]`` → ORM ordering, with MLflow's checks."""
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
        field = allowed[key]
        if field in seen:
            raise invalid(f"`order_by` contains duplicate fields: {values}")
        seen.add(field)
        ordering.append(("-" if direction == "DESC" else "") + field)
    return ordering
