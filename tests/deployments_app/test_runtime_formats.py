"""The runtime's format detection, signatures, request parsing and validation, in process.

The HTTP behaviour is covered against a real subprocess in test_runtime_server.py; these tests pin
the pieces that decide what a request means and what a model directory holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from deployments_app.runtime.errors import InputError, ModelLoadError, ModelRefusedError
from deployments_app.runtime.formats import detect, load, signature_columns
from deployments_app.runtime.protocols import mlflow_parse, v2_parse, v2_response
from deployments_app.runtime.requirements import REQUIREMENTS_FILE, requirements_for
from deployments_app.runtime.served import Table

REPO = Path(__file__).resolve().parents[2]


def test_the_runtime_imports_neither_django_nor_model_libraries_up_front():
    code = (
        "import sys\n"
        "import deployments_app.runtime.cli, deployments_app.runtime.server\n"
        "import deployments_app.runtime.formats\n"
        "heavy = [m for m in ('django', 'sklearn', 'skops', 'onnxruntime', 'pandas', 'xgboost', 'lightgbm',"
        " 'mlflow', 'models_app') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (REPO / "deployments_app" / "__init__.py").read_text().strip() == ""


def test_requirements_per_format():
    assert "skops>=0.11,<0.17" in requirements_for("skops")
    assert any(r.startswith("onnxruntime") for r in requirements_for("onnx"))
    assert any(r.startswith("xgboost-cpu") for r in requirements_for("xgboost"))
    for fmt in ("skops", "onnx", "pickle", "lightgbm", "mlflow-pyfunc"):
        assert requirements_for(fmt)[:2] == ["numpy>=1.26,<3", "PyYAML>=6,<7"]
    assert [line for line in REQUIREMENTS_FILE.read_text().splitlines() if not line.startswith("#")] == [
        "numpy>=1.26,<3",
        "PyYAML>=6,<7",
    ]
    with pytest.raises(KeyError):
        requirements_for("tensorflow")


# -- detection ------------------------------------------------------------------------------------------


@pytest.fixture
def lr():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def test_detect_prefers_mlmodel_then_skops_then_onnx(tmp_path, lr):
    sio.dump(lr, tmp_path / "model.skops")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    assert detect(tmp_path).format == "skops"
    (tmp_path / "MLmodel").write_text("flavors:\n  onnx:\n    data: model.onnx\n")
    found = detect(tmp_path)
    assert (found.format, found.path.name, found.mlflow_dir) == ("onnx", "model.onnx", tmp_path)
    assert detect(tmp_path / "model.skops").format == "skops"  # a single file works too


def test_detect_pickles_need_allow_pickle(tmp_path, lr):
    import joblib

    joblib.dump(lr, tmp_path / "model.joblib")
    found = detect(tmp_path)
    assert found.format == "pickle" and found.needs_pickle
    with pytest.raises(ModelRefusedError, match="security_scan"):
        load(tmp_path, name="m")
    model = load(tmp_path, name="m", allow_pickle=True)
    assert model.predict_table(Table([[1.0, 0.0, 0.0]])) == lr.predict([[1.0, 0.0, 0.0]]).tolist()


def test_detect_refuses_ambiguity_and_reports_an_empty_dir(tmp_path, lr):
    sio.dump(lr, tmp_path / "a.skops")
    sio.dump(lr, tmp_path / "b.skops")
    with pytest.raises(ModelLoadError, match=r"more than one \.skops file.*a\.skops, b\.skops"):
        detect(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no model found"):
        detect(empty)
    with pytest.raises(ModelLoadError, match="does not exist"):
        detect(tmp_path / "missing")


def test_mlmodel_flavors(tmp_path):
    def flavors(text):
        (tmp_path / "MLmodel").write_text(text)
        return detect(tmp_path)

    (tmp_path / "model.pkl").write_bytes(b"x")
    (tmp_path / "model.xgb").write_bytes(b"x")
    found = flavors(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n"
    )
    assert (found.format, found.needs_pickle) == ("pickle", True)
    found = flavors("flavors:\n  xgboost:\n    data: model.xgb\n    model_class: xgboost.core.Booster\n")
    assert found.format == "xgboost" and not found.needs_pickle
    found = flavors("flavors:\n  python_function:\n    loader_module: my_module\n")
    assert (found.format, found.needs_pickle) == ("mlflow-pyfunc", True)
    with pytest.raises(ModelLoadError, match="does not exist"):
        flavors("flavors:\n  onnx:\n    data: nope.onnx\n")
    with pytest.raises(ModelLoadError, match="no flavor this runtime can serve"):
        flavors("flavors:\n  tensorflow:\n    saved_model_dir: tfmodel\n")
    with pytest.raises(ModelLoadError, match="no 'flavors' section"):
        flavors("just text")
    (tmp_path / "requirements.txt").write_text("mlflow==3.17.2\n")
    assert (
        flavors("flavors:\n  python_function: {}\n").model_requirements_file == tmp_path / "requirements.txt"
    )


def test_pyfunc_without_mlflow_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: my_module\n")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail even if installed
    with pytest.raises(ModelLoadError, match="needs mlflow installed"):
        load(tmp_path, name="m", allow_pickle=True)


def test_signature_columns():
    cols = json.dumps([{"type": "double", "name": "a", "required": True}, {"type": "string", "name": "b"}])
    specs, n = signature_columns({"inputs": cols})
    assert [(c.name, c.type, c.required) for c in specs] == [("a", "double", True), ("b", "string", True)]
    assert n is None
    tensor = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 7]}}])
    assert signature_columns({"inputs": tensor}) == (None, 7)
    assert signature_columns(None) == (None, None)
    assert signature_columns({"inputs": "not json"}) == (None, None)


# -- MLflow protocol parsing -----------------------------------------------------------------------------


def parse(payload, ctype="application/json"):
    return mlflow_parse(json.dumps(payload).encode() if not isinstance(payload, bytes) else payload, ctype)


def test_mlflow_input_forms_become_the_same_table():
    split = parse({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}})
    records = parse({"dataframe_records": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]})
    columnar = parse({"inputs": {"a": [1, 3], "b": [2, 4]}})
    csv = parse(b"a,b\n1,2\n3,4\n", "text/csv; charset=utf-8")
    for table in (split, records, columnar, csv):
        assert (table.columns, table.rows) == (["a", "b"], [[1, 2], [3, 4]])
    assert parse({"instances": [[1, 2]]}).rows == [[1, 2]] and parse({"instances": [[1, 2]]}).columns is None
    assert parse({"inputs": {"a": 1, "b": "x"}}).rows == [[1, "x"]]
    assert parse(b"a,b\n1.5,\n", "text/csv").rows == [[1.5, None]]
    assert parse({"inputs": [[1]], "params": {"k": 1}}).rows == [[1]]


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"[]", "application/json", "must be a JSON object"),
        (b"{}", "application/json", "exactly one of the fields"),
        (b'{"dataframe_split": [1]}', "application/json", "must be an object with 'data'"),
        (b'{"dataframe_split": {"data": []}}', "application/json", "non-empty list of rows"),
        (b'{"dataframe_split": {"columns": "a", "data": [[1]]}}', "application/json", "list of column names"),
        (b'{"inputs": {"a": [1], "b": [1, 2]}}', "application/json", "different lengths"),
        (b'{"inputs": "x"}', "application/json", "non-empty list"),
        (b"", "text/csv", "empty CSV body"),
        (b"a,b\n", "text/csv", "no data rows"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"{}", "application/octet-stream", "unsupported Content-Type"),
    ],
)
def test_mlflow_parse_errors(body, ctype, message):
    with pytest.raises(InputError, match=message):
        mlflow_parse(body, ctype)


# -- validation against the model ------------------------------------------------------------------------


def test_signature_types_are_enforced(tmp_path, lr):
    sio.dump(lr, tmp_path / "model.skops")
    cols = [{"type": "double", "name": "x"}, {"type": "long", "name": "n"}, {"type": "double", "name": "z"}]
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
        f"signature:\n  inputs: '{json.dumps(cols)}'\n"
    )
    model = load(tmp_path, name="m")
    assert [c.name for c in model.columns] == ["x", "n", "z"]
    ok = model.predict_table(Table([[0.5, 2, 1.0]], ["x", "n", "z"]))
    assert ok == lr.predict([[0.5, 2, 1.0]]).tolist()
    with pytest.raises(InputError, match="column 'n': expected integers"):
        model.predict_table(Table([[0.5, 2.5, 1.0]], ["x", "n", "z"]))
    with pytest.raises(InputError, match="column 'x': expected a number, got '1'"):
        model.predict_table(Table([["1", 2, 1.0]], ["x", "n", "z"]))
    with pytest.raises(InputError, match="column 'n': missing value where an integer is required"):
        model.predict_table(Table([[0.5, None, 1.0]], ["x", "n", "z"]))
    with pytest.raises(InputError, match="missing columns: z"):
        model.predict_table(Table([[0.5, 2]], ["x", "n"]))
    # extra columns are ignored, like MLflow's schema enforcement
    extra = model.predict_table(Table([[9, 0.5, 2, 1.0]], ["extra", "x", "n", "z"]))
    assert extra == ok


def test_a_pipeline_with_string_columns_gets_a_dataframe(tmp_path):
    frame = pd.DataFrame({"color": ["red", "blue", "red", "green"] * 10, "size": np.arange(40.0)})
    y = (frame["color"] == "red").astype(int)
    from sklearn.compose import make_column_transformer

    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["color"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, y)
    sio.dump(pipe, tmp_path / "pipe.skops")
    model = load(tmp_path, name="p")
    rows = [["red", 1.0], ["blue", 2.0]]
    got = model.predict_table(Table([r[::-1] for r in rows], ["size", "color"]))
    assert got == pipe.predict(pd.DataFrame(rows, columns=["color", "size"])).tolist()


# -- v2 parsing ------------------------------------------------------------------------------------------


def test_v2_parse_and_response_shapes():
    body = {
        "id": "42",
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
            {"name": "c", "shape": [1], "datatype": "BOOL", "data": [True]},
        ],
        "outputs": [{"name": "predict"}],
    }
    rid, tensors, requested = v2_parse(json.dumps(body).encode())
    assert rid == "42" and requested == ["predict"]
    assert tensors["a"].dtype == np.float32 and tensors["a"].shape == (2, 2)
    assert tensors["b"].tolist() == ["x", "y"] and tensors["c"].tolist() == [True]
    resp = v2_response("m", "3", "42", [("predict", np.array([[1, 2], [3, 4]], dtype=np.int64))])
    assert resp == {
        "model_name": "m",
        "model_version": "3",
        "id": "42",
        "parameters": {},
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]}],
    }
    with pytest.raises(InputError, match="given twice"):
        v2_parse(json.dumps({"inputs": [body["inputs"][0]] * 2}).encode())
    with pytest.raises(InputError, match="'id' must be a string"):
        v2_parse(json.dumps({"id": 1, "inputs": body["inputs"]}).encode())
    with pytest.raises(InputError, match="ragged"):
        v2_parse(b'{"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3]]}]}')
