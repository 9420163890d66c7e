"""Request parsing and response shaping for the two protocols.

MLflow scoring protocol (`POST /invocations`, as `mlflow models serve` speaks it): a JSON object with
exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs` (and optionally
`params`), or CSV with a header row (`Content-Type: text/csv`); the answer is
`{"predictions": [...]}`; errors are `{"error_code": "BAD_REQUEST", "message": ...}`.

Open Inference Protocol v2 (`POST /v2/models/{name}/infer`): `{"id"?, "parameters"?, "inputs":
[{"name", "shape", "datatype", "data", "parameters"?}], "outputs"?: [{"name"}]}`; the answer is
`{"model_name", "model_version", "id", "parameters", "outputs": [{"name", "shape", "datatype",
"data"}]}` with `data` flattened in row-major order; errors are `{"error": ...}`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from typing import Any

import numpy as np

from .errors import InputError
from .served import V2_TO_NUMPY, Table, to_jsonable, v2_datatype

MLFLOW_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _json(body: bytes) -> Any:
    if not body:
        raise InputError("empty request body; send a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from None


# -- MLflow -------------------------------------------------------------------------------------------


def _records(records: Any, field: str) -> Table:
    if not isinstance(records, list) or not records:
        raise InputError(f"'{field}' must be a non-empty list of objects")
    columns: dict[str, None] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"'{field}' item {i} is not an object")
        for key in rec:
            columns.setdefault(key, None)
    names = list(columns)
    rows = [[rec.get(c) for c in names] for rec in records]
    return Table(rows, names)


def _columnar(data: dict, field: str) -> Table:
    names = list(data)
    if not names:
        raise InputError(f"'{field}' is an empty object")
    values = list(data.values())
    if all(not isinstance(v, list | dict) for v in values):  # one row given as {"col": value}
        return Table([values], names)
    if not all(isinstance(v, list) for v in values):
        raise InputError(f"'{field}' as an object must map each column to a list of values")
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise InputError(f"'{field}': columns have different lengths")
    return Table([list(r) for r in zip(*values, strict=True)], names)


def mlflow_parse_json(body: bytes) -> Table:
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InputError(f"the body must be a JSON object with one of the fields {', '.join(MLFLOW_FIELDS)}")
    given = [f for f in MLFLOW_FIELDS if f in payload]
    unknown = sorted(set(payload) - set(MLFLOW_FIELDS) - {"params"})
    if len(given) != 1 or unknown:
        raise InputError(
            f"the body must be a JSON object with exactly one of the fields {', '.join(MLFLOW_FIELDS)} "
            f"(and optionally params); got: {', '.join(sorted(payload)) or 'no fields'}"
        )
    field = given[0]
    value = payload[field]
    if field == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise InputError(
                "'dataframe_split' must be an object with 'data' (and optionally 'columns', 'index')"
            )
        data, columns = value["data"], value.get("columns")
        if not isinstance(data, list) or not data:
            raise InputError("'dataframe_split.data' must be a non-empty list of rows")
        if columns is not None:
            if not isinstance(columns, list) or not all(isinstance(c, str | int) for c in columns):
                raise InputError("'dataframe_split.columns' must be a list of column names")
            columns = [str(c) for c in columns]
            if any(not isinstance(r, list) for r in data):
                if len(columns) == 1:
                    data = [[r] for r in data]
                else:
                    raise InputError("'dataframe_split.data' must be a list of rows (lists)")
        return Table(data, columns)
    if field == "dataframe_records":
        return _records(value, field)
    if isinstance(value, dict):
        return _columnar(value, field)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _records(value, field)
    if not isinstance(value, list) or not value:
        raise InputError(f"'{field}' must be a non-empty list (of rows) or an object of columns")
    return Table(value)


def _cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def mlflow_parse_csv(body: bytes) -> Table:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the CSV body is not UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty CSV body; send a header row and at least one data row") from None
    except csv.Error as exc:
        raise InputError(f"invalid CSV: {exc}") from None
    try:
        rows = [[_cell(c.strip()) for c in row] for row in reader if row]
    except csv.Error as exc:
        raise InputError(f"invalid CSV: {exc}") from None
    if not rows:
        raise InputError("the CSV body has a header but no data rows")
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise InputError(
            f"CSV line {bad[0]} has a different number of fields than the header ({len(header)})"
        )
    return Table(rows, [h.strip() for h in header])


def mlflow_parse(body: bytes, content_type: str) -> Table:
    main = content_type.split(";", 1)[0].strip().lower()
    if main in ("", "application/json", "application/x-www-form-urlencoded"):  # the last: curl -d
        return mlflow_parse_json(body)
    if main == "text/csv":
        return mlflow_parse_csv(body)
    raise InputError(f"unsupported Content-Type {main!r}: send application/json or text/csv", status=415)


def mlflow_response(predictions: Any) -> dict[str, Any]:
    return {"predictions": predictions}


def mlflow_error(message: str) -> dict[str, Any]:
    return {"error_code": "BAD_REQUEST", "message": message}


# -- Open Inference Protocol v2 -----------------------------------------------------------------------


def _tensor(spec: Any, i: int) -> tuple[str, np.ndarray]:
    if not isinstance(spec, dict):
        raise InputError(f"inputs[{i}] must be an object with name, shape, datatype, data")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"inputs[{i}].name must be a non-empty string")
    shape, datatype, data = spec.get("shape"), spec.get("datatype"), spec.get("data")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(f"input '{name}': shape must be a list of non-negative integers")
    if datatype not in V2_TO_NUMPY:
        raise InputError(
            f"input '{name}': datatype must be one of {', '.join(V2_TO_NUMPY)}, got {datatype!r}"
        )
    if data is None:
        raise InputError(f"input '{name}': data is required (binary tensor data is not supported)")
    if not isinstance(data, list):
        data = [data]
    expected = math.prod(shape)
    dtype = V2_TO_NUMPY[datatype]
    try:
        raw = np.array(data, dtype=object).reshape(-1) if datatype == "BYTES" else np.asarray(data)
    except ValueError:
        raise InputError(f"input '{name}': data is a ragged nested list") from None
    if raw.size != expected:
        raise InputError(f"input '{name}': shape {shape} needs {expected} values, data has {raw.size}")
    if datatype == "BOOL":
        if raw.dtype.kind not in "bi":
            raise InputError(f"input '{name}': datatype BOOL needs true/false values")
    elif datatype != "BYTES" and raw.dtype.kind not in "biuf":
        raise InputError(f"input '{name}': datatype {datatype} needs numbers, got {raw.dtype.kind!r} data")
    elif datatype != "BYTES" and np.dtype(dtype).kind in "iu" and raw.dtype.kind == "f":
        raise InputError(f"input '{name}': datatype {datatype} needs integers, got fractional values")
    try:
        return name, raw.astype(dtype, copy=False).reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"input '{name}': {exc}") from None


def v2_parse(body: bytes) -> tuple[str | None, dict[str, np.ndarray], list[str] | None]:
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InputError("the body must be a JSON object with 'inputs'")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("'id' must be a string")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, np.ndarray] = {}
    for i, spec in enumerate(inputs):
        name, arr = _tensor(spec, i)
        if name in tensors:
            raise InputError(f"input '{name}' given twice")
        tensors[name] = arr
    outputs = payload.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise InputError("'outputs' must be a list of objects with a 'name'")
        requested = [o["name"] for o in outputs] or None
    return request_id, tensors, requested


def v2_response(
    model_name: str, version: str, request_id: str | None, results: list[tuple[str, np.ndarray]]
) -> dict:
    outputs = []
    for name, value in results:
        arr = np.asarray(value)
        outputs.append(
            {
                "name": name,
                "datatype": v2_datatype(arr.dtype),
                "shape": list(arr.shape),
                "data": to_jsonable(arr.reshape(-1)),
            }
        )
    return {
        "model_name": model_name,
        "model_version": version,
        "id": request_id if request_id is not None else str(uuid.uuid4()),
        "parameters": {},
        "outputs": outputs,
    }
