"""A loaded model behind one interface, whatever its format.

Requests of both protocols are parsed into a `Table` (MLflow: rows with optional column names) or
named tensors (Open Inference Protocol v2). `ServedModel` checks them against what it knows of the
model's signature (MLmodel `signature`, ONNX input metadata, scikit-learn `feature_names_in_` /
`n_features_in_`) and raises `InputError` for anything the model cannot take, so a bad request is a
4xx with a message and never reaches the model.

NumPy arrays go to the model on the hot path; pandas is imported only for models that need named
columns (scikit-learn models fitted on a DataFrame, MLflow pyfunc models).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

# Open Inference Protocol datatypes <-> NumPy.
V2_TO_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

# MLflow column types (ColSpec "type") -> the kind of value a column holds.
MLFLOW_NUMERIC = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}

MAX_ROWS = 1_000_000


def v2_datatype(dtype: np.dtype) -> str:
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iuf":
        prefix = {"i": "INT", "u": "UINT", "f": "FP"}[kind]
        return f"{prefix}{dtype.itemsize * 8}"
    return "BYTES"


@dataclass
class TensorSpec:
    """One input or output of the model in v2 metadata terms."""

    name: str
    datatype: str
    shape: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class ColumnSpec:
    """A named column of a tabular signature; `type` is an MLflow type name or None if unknown."""

    name: str
    type: str | None = None
    required: bool = True


@dataclass
class Table:
    """A batch of rows from the MLflow protocol: row-major values, with column names when given."""

    rows: Any  # list of rows, or a 2-D ndarray
    columns: list[str] | None = None


def _as_rows(rows: Any) -> np.ndarray:
    """Turn a list of rows into a 2-D array, keeping NumPy's own dtype (numbers, bools or objects)."""
    if isinstance(rows, np.ndarray):
        arr = rows
    else:
        if not isinstance(rows, list):
            raise InputError("expected a list of rows")
        if not rows:
            raise InputError("no rows in the request")
        try:
            arr = np.asarray(rows)
        except ValueError:
            lengths = sorted({len(r) if isinstance(r, list) else 1 for r in rows})
            raise InputError(f"rows have different lengths ({', '.join(map(str, lengths))})") from None
        if arr.dtype.kind in "US":  # NumPy turned mixed values into strings: keep the originals
            arr = np.array(rows, dtype=object)
    if arr.ndim == 1:
        if arr.dtype == object and any(isinstance(v, list) for v in arr):
            raise InputError("rows have different lengths")
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InputError(f"expected rows of scalar values (a 2-D array), got {arr.ndim} dimensions")
    if arr.shape[0] > MAX_ROWS:
        raise InputError(f"at most {MAX_ROWS} rows per request")
    return arr


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_numeric_column(values: np.ndarray, name: str, target: type, required: bool = True) -> np.ndarray:
    """Convert one column to a numeric dtype, refusing strings and (for integers) fractions."""
    if values.dtype.kind in "biuf":
        out = values
    else:
        converted = []
        for v in values.tolist():
            if v is None:
                if np.issubdtype(target, np.integer):
                    raise InputError(f"column '{name}': missing value where an integer is required")
                converted.append(math.nan)
            elif isinstance(v, bool | int | float):
                converted.append(v)
            else:
                expected = "a number" if np.issubdtype(target, np.floating) else "an integer"
                raise InputError(f"column '{name}': expected {expected}, got {_describe(v)}")
        out = np.asarray(converted, dtype=np.float64)
    if np.issubdtype(target, np.integer) and out.dtype.kind == "f":
        finite = np.isfinite(out)
        if not finite.all() or not np.equal(np.mod(out, 1), 0).all():
            raise InputError(f"column '{name}': expected integers, got a fractional or missing value")
    try:
        return out.astype(target, copy=False)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"column '{name}': {exc}") from None


def _check_column_type(values: np.ndarray, spec: ColumnSpec) -> np.ndarray:
    kind = spec.type
    if kind in MLFLOW_NUMERIC:
        return _to_numeric_column(values, spec.name, MLFLOW_NUMERIC[kind], spec.required)
    if kind == "boolean":
        for v in values.tolist():
            if not isinstance(v, bool | np.bool_) and v not in (0, 1):
                raise InputError(f"column '{spec.name}': expected a boolean, got {_describe(v)}")
        return values.astype(bool)
    if kind == "string":
        for v in values.tolist():
            if not isinstance(v, str) and not (v is None and not spec.required):
                raise InputError(f"column '{spec.name}': expected a string, got {_describe(v)}")
        return values.astype(object)
    return values


@dataclass
class Prepared:
    """Validated input: a 2-D array in the model's column order, and the column names if known."""

    array: np.ndarray
    columns: list[str] | None
    mixed: list[np.ndarray] | None = None  # per-column arrays when the columns have different dtypes

    def frame(self):
        import pandas as pd

        if self.mixed is not None:
            names = self.columns or [str(i) for i in range(len(self.mixed))]
            return pd.DataFrame(dict(zip(names, self.mixed, strict=True)))
        return pd.DataFrame(self.array, columns=self.columns)


@dataclass
class ServedModel:
    """The interface the HTTP layer talks to. Subclasses implement `_predict` (and maybe `infer`)."""

    name: str
    version: str
    format: str
    platform: str
    source: str  # the file or directory it was loaded from
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    columns: list[ColumnSpec] | None = None
    n_features: int | None = None
    needs_frame: bool = False  # pass a pandas DataFrame with the column names to the model
    numeric: bool = True  # the model takes a numeric matrix (no string columns)
    float_dtype: type = np.float64

    # -- MLflow protocol -------------------------------------------------------------------------
    def prepare(self, table: Table) -> Prepared:
        arr = _as_rows(table.rows)
        given = table.columns
        expected = [c.name for c in self.columns] if self.columns else None
        if given is not None:
            if len(given) != arr.shape[1]:
                raise InputError(f"{len(given)} column names for rows of {arr.shape[1]} values")
            if len(set(given)) != len(given):
                raise InputError("duplicate column names")
            if expected is not None:
                missing = [
                    c.name
                    for c in self.columns
                    if c.name not in given and (c.required or self.numeric or self.needs_frame)
                ]
                if missing:
                    raise InputError(f"missing columns: {', '.join(missing)}")
                if given != expected:
                    index = {c: i for i, c in enumerate(given)}
                    arr = arr[:, [index[c] for c in expected]]
                names = expected
            else:
                names = list(given)
        else:
            names = expected
        width = len(expected) if expected is not None else self.n_features
        if width is not None and arr.shape[1] != width:
            raise InputError(f"expected {width} features per row, got {arr.shape[1]}")
        return self._convert(arr, names)

    def _convert(self, arr: np.ndarray, names: list[str] | None) -> Prepared:
        # Fast path: a numeric matrix for a model whose columns are all floating point (or untyped).
        strict = self.columns is not None and any(
            c.type not in (None, "double", "float") for c in self.columns
        )
        if arr.dtype.kind in "biuf" and not strict:
            if self.numeric:
                return Prepared(arr.astype(self.float_dtype, copy=False), names)
            return Prepared(arr, names)
        # Objects (strings, None, mixed): check column by column to name the offending one.
        specs = self.columns or [ColumnSpec(n) for n in (names or [f"{i}" for i in range(arr.shape[1])])]
        cols = []
        for j, spec in enumerate(specs):
            col = arr[:, j]
            if spec.type:
                col = _check_column_type(col, spec)
            elif self.numeric:
                col = _to_numeric_column(col, spec.name, self.float_dtype)
            else:
                natural = np.asarray(col.tolist())
                col = natural if natural.dtype.kind in "biufU" else col
            cols.append(col)
        if self.numeric:
            return Prepared(np.column_stack(cols).astype(self.float_dtype, copy=False), names)
        return Prepared(arr, names, mixed=cols)

    def predict_table(self, table: Table) -> Any:
        """Predictions for the MLflow protocol: a list (or list of records) ready for JSON."""
        prepared = self.prepare(table)
        return to_jsonable(self.predict(prepared))

    def predict(self, prepared: Prepared) -> Any:
        return self._predict(prepared)

    def _predict(self, prepared: Prepared) -> Any:
        raise NotImplementedError

    # -- Open Inference Protocol v2 ----------------------------------------------------------------
    def infer(
        self, tensors: dict[str, np.ndarray], requested: list[str] | None
    ) -> list[tuple[str, np.ndarray]]:
        """Tabular models: one 2-D tensor of rows, or one 1-D/[n,1] tensor per named column."""
        if len(tensors) == 1:
            (arr,) = tensors.values()
            if arr.ndim == 1:
                arr = arr.reshape(1, -1) if self.n_features not in (None, 1) else arr.reshape(-1, 1)
            table = Table(arr)
        else:
            cols = []
            for name, arr in tensors.items():
                if arr.ndim == 2 and arr.shape[1] == 1:
                    arr = arr[:, 0]
                if arr.ndim != 1:
                    raise InputError(f"input '{name}': one tensor per column must have shape [n] or [n, 1]")
                cols.append(arr)
            if len({len(c) for c in cols}) != 1:
                raise InputError("all column inputs must have the same number of rows")
            if all(c.dtype.kind in "biuf" for c in cols):
                rows = np.column_stack(cols)
            else:
                rows = np.empty((len(cols[0]), len(cols)), dtype=object)
                for j, c in enumerate(cols):
                    rows[:, j] = c
            table = Table(rows, list(tensors))
        prepared = self.prepare(table)
        names = requested or [self.outputs[0].name if self.outputs else "predict"]
        return [(name, np.asarray(self.output(name, prepared))) for name in names]

    def output(self, name: str, prepared: Prepared) -> Any:
        if name == (self.outputs[0].name if self.outputs else "predict"):
            return self.predict(prepared)
        raise InputError(f"unknown output '{name}'", status=400)


def to_jsonable(result: Any) -> Any:
    if isinstance(result, np.ndarray):
        if result.dtype.kind in "OUS":
            return [to_jsonable(v) for v in result.tolist()]
        return result.tolist()
    if isinstance(result, dict):
        return {str(k): to_jsonable(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [to_jsonable(v) for v in result]
    if isinstance(result, np.generic):
        return result.item()
    if isinstance(result, bytes):
        return result.decode("utf-8", "replace")
    if hasattr(result, "to_dict") and hasattr(result, "columns"):  # a pandas DataFrame
        return to_jsonable(result.to_dict(orient="records"))
    if hasattr(result, "to_numpy"):  # a pandas Series
        return to_jsonable(result.to_numpy())
    return result


class SklearnModel(ServedModel):
    """A scikit-learn estimator (or anything with `predict`, e.g. from a pickle)."""

    estimator: Any = None

    @classmethod
    def build(cls, estimator: Any, **kw: Any) -> SklearnModel:
        names = getattr(estimator, "feature_names_in_", None)
        n = getattr(estimator, "n_features_in_", None)
        columns = kw.pop("columns", None)
        if columns is None and names is not None:
            columns = [ColumnSpec(str(c)) for c in names]
        needs_frame = names is not None
        numeric = not (columns and any(c.type in ("string", "boolean", "binary") for c in columns))
        typed = bool(columns) and any(c.type for c in columns)
        if needs_frame and not typed and (hasattr(estimator, "steps") or hasattr(estimator, "transformers")):
            # A pipeline fitted on a DataFrame may take string columns: pass each column as given and
            # let its own validation speak (a ValueError becomes a 400).
            numeric = False
        model = cls(
            platform="sklearn",
            columns=columns,
            n_features=int(n) if n is not None else (len(columns) if columns else None),
            needs_frame=needs_frame,
            numeric=numeric,
            **kw,
        )
        model.estimator = estimator
        width = model.n_features if model.n_features is not None else -1
        model.inputs = [TensorSpec("input-0", "FP64" if numeric else "BYTES", [-1, width])]
        out_dtype = (
            getattr(estimator, "classes_", np.zeros(0)).dtype if hasattr(estimator, "classes_") else None
        )
        model.outputs = [
            TensorSpec("predict", v2_datatype(out_dtype) if out_dtype is not None else "FP64", [-1])
        ]
        if hasattr(estimator, "predict_proba"):
            n_classes = len(getattr(estimator, "classes_", [])) or -1
            model.outputs.append(TensorSpec("predict_proba", "FP64", [-1, n_classes]))
        return model

    def _x(self, prepared: Prepared) -> Any:
        return prepared.frame() if self.needs_frame or not self.numeric else prepared.array

    def _predict(self, prepared: Prepared) -> Any:
        return self.estimator.predict(self._x(prepared))

    def output(self, name: str, prepared: Prepared) -> Any:
        if name == "predict":
            return self._predict(prepared)
        if name == "predict_proba" and hasattr(self.estimator, "predict_proba"):
            return self.estimator.predict_proba(self._x(prepared))
        raise InputError(
            f"unknown output '{name}' (this model has: {', '.join(o.name for o in self.outputs)})"
        )


class FunctionModel(ServedModel):
    """A model given as a predict function over a 2-D array or DataFrame (boosters, pyfunc)."""

    fn: Callable[[Any], Any] | None = None

    def _predict(self, prepared: Prepared) -> Any:
        return self.fn(prepared.frame() if self.needs_frame else prepared.array)


ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _onnx_shape(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


class OnnxModel(ServedModel):
    """An ONNX graph run by onnxruntime. Tensors go straight through; tables map to the inputs."""

    session: Any = None
    input_types: dict[str, type] = {}  # replaced per instance in build()
    tensor_outputs: list[str] = []

    @classmethod
    def build(cls, session: Any, columns: list[ColumnSpec] | None = None, **kw: Any) -> OnnxModel:
        model = cls(platform="onnxruntime_onnx", columns=columns, **kw)
        model.session = session
        model.input_types = {}
        for i in session.get_inputs():
            if i.type not in ONNX_TYPES:
                raise ValueError(f"unsupported ONNX input type {i.type} for '{i.name}'")
            model.input_types[i.name] = ONNX_TYPES[i.type]
            dt = v2_datatype(np.dtype(ONNX_TYPES[i.type]))
            model.inputs.append(TensorSpec(i.name, dt, _onnx_shape(i.shape)))
        for o in session.get_outputs():
            if o.type in ONNX_TYPES:
                dt = v2_datatype(np.dtype(ONNX_TYPES[o.type]))
                model.outputs.append(TensorSpec(o.name, dt, _onnx_shape(o.shape)))
            else:  # e.g. seq(map(int64, tensor(float))) from a ZipMap: served as a 2-D FP32 tensor
                model.outputs.append(TensorSpec(o.name, "FP32", [-1, -1]))
        first = model.inputs[0]
        model.float_dtype = model.input_types[first.name]
        model.numeric = np.dtype(model.float_dtype).kind in "biuf"
        if len(model.inputs) == 1 and len(first.shape) == 2 and first.shape[1] > 0:
            model.n_features = first.shape[1]
            if columns and len(columns) != first.shape[1]:
                model.columns = None  # the signature does not describe this graph's single tensor
        elif len(model.inputs) > 1 and not columns:
            model.columns = [ColumnSpec(i.name) for i in model.inputs]
        return model

    def _run(self, feeds: dict[str, np.ndarray], names: list[str] | None = None) -> list[tuple[str, Any]]:
        outputs = names or [o.name for o in self.outputs]
        try:
            values = self.session.run(outputs, feeds)
        except Exception as exc:  # onnxruntime raises its own classes for bad shapes / types
            kind = type(exc).__name__
            if kind in ("InvalidArgument", "Fail", "InvalidGraph") or "INVALID_ARGUMENT" in str(exc):
                raise InputError(f"the model rejected the input: {exc}") from None
            raise
        return list(zip(outputs, values, strict=True))

    def _feeds_from_table(self, prepared: Prepared) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            return {self.inputs[0].name: prepared.array.astype(self.float_dtype, copy=False)}
        feeds = {}
        cols = prepared.mixed or [prepared.array[:, j] for j in range(prepared.array.shape[1])]
        by_name = dict(zip(prepared.columns or [], cols, strict=False))
        for spec in self.inputs:
            if spec.name not in by_name:
                raise InputError(f"missing column for model input '{spec.name}'")
            dtype = self.input_types[spec.name]
            col = np.asarray(by_name[spec.name])
            if np.dtype(dtype).kind in "biuf":
                col = _to_numeric_column(col, spec.name, dtype)
            feeds[spec.name] = col.astype(dtype).reshape(-1, 1)
        return feeds

    def prepare(self, table: Table) -> Prepared:
        if len(self.inputs) > 1:
            self.numeric = False  # per-column inputs, each converted to its own dtype in the feeds
        return super().prepare(table)

    def _predict(self, prepared: Prepared) -> Any:
        results = self._run(self._feeds_from_table(prepared))
        if len(results) == 1:
            return results[0][1]
        rows = len(prepared.array)
        records = [{} for _ in range(rows)]
        for name, value in results:
            value = to_jsonable(value)
            for i in range(min(rows, len(value))):
                records[i][name] = value[i]
        return records

    def infer(
        self, tensors: dict[str, np.ndarray], requested: list[str] | None
    ) -> list[tuple[str, np.ndarray]]:
        feeds = {}
        names = list(self.input_types)
        if len(tensors) == 1 and len(names) == 1:
            feeds[names[0]] = next(iter(tensors.values()))
        else:
            missing = [n for n in names if n not in tensors]
            if missing:
                raise InputError(f"missing inputs: {', '.join(missing)}")
            feeds = {n: tensors[n] for n in names}
        for (name, arr), spec in zip(feeds.items(), self.inputs, strict=True):
            dtype = self.input_types[name]
            if np.dtype(dtype).kind in "biuf" and arr.dtype.kind not in "biuf":
                raise InputError(f"input '{name}': expected {spec.datatype}, got non-numeric data")
            if len(spec.shape) != arr.ndim:
                if len(spec.shape) == 2 and arr.ndim == 1 and spec.shape[1] > 0:
                    arr = arr.reshape(-1, spec.shape[1]) if arr.size % spec.shape[1] == 0 else arr
                if len(spec.shape) != arr.ndim:
                    raise InputError(f"input '{name}': expected shape {spec.shape}, got {list(arr.shape)}")
            for want, got in zip(spec.shape, arr.shape, strict=True):
                if want >= 0 and want != got:
                    raise InputError(f"input '{name}': expected shape {spec.shape}, got {list(arr.shape)}")
            feeds[name] = arr.astype(dtype, copy=False)
        known = [o.name for o in self.outputs]
        for n in requested or []:
            if n not in known:
                raise InputError(f"unknown output '{n}' (this model has: {', '.join(known)})")
        results = self._run(feeds, requested)
        out = []
        for name, value in results:
            if isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap
                keys = sorted(value[0])
                value = np.asarray([[row[k] for k in keys] for row in value], dtype=np.float32)
            out.append((name, np.asarray(value)))
        return out
