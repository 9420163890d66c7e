"""The serving runtime as a real subprocess on a free port, with real models trained here.

Every test talks HTTP to `python -m deployments_app.runtime` and compares the answers with the
model's own in-process `predict`. Nothing is mocked.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

REPO = Path(__file__).resolve().parents[2]
N_FEATURES = 20


class Runtime:
    """A running runtime subprocess and a keep-alive HTTP connection to it."""

    def __init__(self, proc: subprocess.Popen, port: int, name: str):
        self.proc, self.port, self.name = proc, port, name
        self.url = f"http://127.0.0.1:{port}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body=None, headers: dict | None = None):
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return resp.status, (
            json.loads(data) if ctype.startswith("application/json") and data.strip() else data
        )

    def alive(self) -> bool:
        status, _ = self.call("GET", "/v2/health/ready")
        return status == 200 and self.proc.poll() is None

    def stop(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def launch(model_dir: Path, name: str, *extra: str, tmp: Path) -> subprocess.Popen:
    port_file = tmp / f"{name}-{time.monotonic_ns()}.port"
    cmd = [sys.executable, "-m", "deployments_app.runtime", "--model-dir", str(model_dir), "--name", name]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.port_file = port_file
    return proc


def start(model_dir: Path, name: str, *extra: str, tmp: Path) -> Runtime:
    proc = launch(model_dir, name, *extra, tmp=tmp)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.port_file.exists():
            return Runtime(proc, int(proc.port_file.read_text()), name)
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"runtime exited {proc.returncode}:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("runtime did not announce its port in 90 s")


def metric(rt: Runtime, name: str, **labels: str) -> float:
    _, text = rt.call("GET", "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(name + " ") and not want:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- models -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, N_FEATURES))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def lr(data):
    X, y = data
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def skops_rt(lr, workdir):
    d = workdir / "skops-lr"
    d.mkdir()
    sio.dump(lr, d / "model.skops")
    rt = start(d, "lr", tmp=workdir)
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def frame_lr(data):
    X, y = data
    cols = [f"f{i}" for i in range(N_FEATURES)]
    return LogisticRegression(max_iter=500).fit(pd.DataFrame(X, columns=cols), y), cols


@pytest.fixture(scope="module")
def frame_rt(frame_lr, workdir):
    model, _ = frame_lr
    d = workdir / "skops-frame"
    d.mkdir()
    sio.dump(model, d / "model.skops")
    rt = start(d, "framed", tmp=workdir)
    yield rt
    rt.stop()


# -- scikit-learn via skops ------------------------------------------------------------------------------


def test_it_serves_health_and_v2_metadata(skops_rt):
    assert skops_rt.call("GET", "/v2/health/live") == (200, {})
    assert skops_rt.call("GET", "/v2/health/ready") == (200, {})
    assert skops_rt.call("GET", "/v2/models/lr/ready") == (200, {})
    status, meta = skops_rt.call("GET", "/v2/models/lr")
    assert status == 200
    assert meta["name"] == "lr" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, N_FEATURES]}]
    assert meta["outputs"][0] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
    assert meta["outputs"][1] == {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}
    status, server = skops_rt.call("GET", "/v2")
    assert status == 200 and server["name"] == "modelyard-runtime"
    assert skops_rt.call("GET", "/ping")[0] == 200
    assert skops_rt.call("GET", "/health")[0] == 200


def test_v2_infer_matches_in_process_predict(skops_rt, lr, data):
    X, _ = data
    rows = X[:5]
    request = {
        "id": "req-1",
        "inputs": [
            {"name": "input-0", "shape": [5, N_FEATURES], "datatype": "FP64", "data": rows.ravel().tolist()}
        ],
    }
    status, body = skops_rt.call("POST", "/v2/models/lr/infer", request)
    assert status == 200, body
    assert body["id"] == "req-1" and body["model_name"] == "lr" and body["model_version"] == "1"
    (out,) = body["outputs"]
    assert out == {"name": "predict", "datatype": "INT64", "shape": [5], "data": lr.predict(rows).tolist()}

    # nested data, both outputs requested, and the versioned path
    request = {
        "inputs": [{"name": "x", "shape": [5, N_FEATURES], "datatype": "FP64", "data": rows.tolist()}],
        "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
    }
    status, body = skops_rt.call("POST", "/v2/models/lr/versions/1/infer", request)
    assert status == 200, body
    proba, labels = body["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [5, 2]
    np.testing.assert_allclose(np.reshape(proba["data"], (5, 2)), lr.predict_proba(rows), rtol=1e-12)
    assert labels["data"] == lr.predict(rows).tolist()
    assert isinstance(body["id"], str) and body["id"]


def test_mlflow_invocations_all_input_forms_match_predict(skops_rt, lr, data):
    X, _ = data
    rows = X[10:14]
    expected = lr.predict(rows).tolist()
    cols = [f"c{i}" for i in range(N_FEATURES)]
    payloads = [
        {"dataframe_split": {"columns": cols, "data": rows.tolist()}},
        {"dataframe_split": {"data": rows.tolist()}},
        {"dataframe_records": [dict(zip(cols, r, strict=True)) for r in rows.tolist()]},
        {"instances": rows.tolist()},
        {"inputs": rows.tolist()},
        {"inputs": {c: rows[:, i].tolist() for i, c in enumerate(cols)}},
    ]
    for payload in payloads:
        status, body = skops_rt.call("POST", "/invocations", payload)
        assert (status, body) == (200, {"predictions": expected}), payload
    csv = ",".join(cols) + "\n" + "\n".join(",".join(repr(v) for v in r) for r in rows.tolist()) + "\n"
    status, body = skops_rt.call("POST", "/invocations", csv, {"Content-Type": "text/csv"})
    assert (status, body) == (200, {"predictions": expected})
    # one row as a flat list
    status, body = skops_rt.call("POST", "/invocations", {"inputs": rows[0].tolist()})
    assert (status, body) == (200, {"predictions": expected[:1]})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": [[1.0, 2.0]]}, "expected 20 features per row, got 2"),
        ({"inputs": [["a"] + [0.0] * 19]}, "column '0': expected a number, got 'a'"),
        ({"inputs": [[0.0] * 20, [0.0] * 19]}, "rows have different lengths"),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1.0, 2.0]]}},
            "1 column names for rows of 2 values",
        ),
        ({"rows": [[1.0] * 20]}, "exactly one of the fields"),
        ({"inputs": [[0.0] * 20], "instances": [[0.0] * 20]}, "exactly one of the fields"),
        ({"inputs": []}, "non-empty list"),
        ({"dataframe_records": [1, 2]}, "item 0 is not an object"),
        ({"inputs": [[None] * 20]}, "the model rejected the input"),  # NaN, refused by scikit-learn
        ([1, 2, 3], "must be a JSON object"),
    ],
)
def test_mlflow_bad_payloads_are_400_with_a_message(skops_rt, payload, message):
    before = metric(skops_rt, "modelyard_runtime_request_errors_total", endpoint="invocations", kind="client")
    status, body = skops_rt.call("POST", "/invocations", payload)
    assert status == 400
    assert body["error_code"] == "BAD_REQUEST"
    assert message in body["message"]
    assert skops_rt.alive()
    after = metric(skops_rt, "modelyard_runtime_request_errors_total", endpoint="invocations", kind="client")
    assert after == before + 1


def test_mlflow_bad_bodies(skops_rt):
    status, body = skops_rt.call("POST", "/invocations", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in body["message"]
    status, body = skops_rt.call("POST", "/invocations", b"", {"Content-Type": "application/json"})
    assert status == 400 and "empty request body" in body["message"]
    status, body = skops_rt.call("POST", "/invocations", b"a,b\n1,2,3\n", {"Content-Type": "text/csv"})
    assert status == 400 and "CSV line 2" in body["message"]
    status, body = skops_rt.call("POST", "/invocations", b"<x/>", {"Content-Type": "application/xml"})
    assert status == 415 and "unsupported Content-Type" in body["message"]
    status, body = skops_rt.call("GET", "/invocations")
    assert status == 405
    assert skops_rt.alive()


@pytest.mark.parametrize(
    ("request_body", "status_code", "message"),
    [
        (
            {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [1.0] * 19}]},
            400,
            "needs 20 values",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0] * 3}]},
            400,
            "expected 20",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": ["a", "b"]}]},
            400,
            "needs numbers",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FLOAT", "data": [1]}]},
            400,
            "datatype must be",
        ),
        (
            {"inputs": [{"name": "x", "shape": [-1, 20], "datatype": "FP64", "data": [1]}]},
            400,
            "non-negative",
        ),
        ({"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64"}]}, 400, "data is required"),
        ({"inputs": []}, 400, "non-empty list of tensors"),
        ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, 400, "name must be"),
        (
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}]},
            400,
            "needs integers",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}],
                "outputs": [{"name": "nope"}],
            },
            400,
            "unknown output 'nope'",
        ),
    ],
)
def test_v2_bad_requests_are_4xx_with_an_error(skops_rt, request_body, status_code, message):
    status, body = skops_rt.call("POST", "/v2/models/lr/infer", request_body)
    assert status == status_code, body
    assert message in body["error"]
    assert skops_rt.alive()


def test_v2_unknown_model_or_version_is_404(skops_rt):
    req = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}]}
    status, body = skops_rt.call("POST", "/v2/models/other/infer", req)
    assert status == 404 and "model 'other' not found" in body["error"]
    status, body = skops_rt.call("GET", "/v2/models/lr/versions/9")
    assert status == 404 and "version '9'" in body["error"]
    status, body = skops_rt.call("GET", "/nothing/here")
    assert status == 404


def test_metrics_count_requests_errors_and_latency(skops_rt):
    def count(code):
        return metric(
            skops_rt, "modelyard_runtime_requests_total", protocol="v2", endpoint="infer", code=code
        )

    ok, bad = count("200"), count("400")
    hist = metric(
        skops_rt, "modelyard_runtime_request_duration_seconds_count", protocol="v2", endpoint="infer"
    )
    req = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.1] * 20}]}
    for _ in range(3):
        assert skops_rt.call("POST", "/v2/models/lr/infer", req)[0] == 200
    assert skops_rt.call("POST", "/v2/models/lr/infer", {"inputs": 1})[0] == 400
    assert count("200") == ok + 3
    assert count("400") == bad + 1
    assert metric(
        skops_rt, "modelyard_runtime_request_duration_seconds_count", protocol="v2", endpoint="infer"
    ) == (hist + 4)
    _, text = skops_rt.call("GET", "/metrics")
    text = text.decode()
    assert (
        'modelyard_runtime_request_duration_seconds_bucket{protocol="v2",endpoint="infer",le="+Inf"}' in text
    )
    assert 'modelyard_runtime_model_info{name="lr",version="1",format="skops",platform="sklearn"} 1' in text
    assert metric(skops_rt, "modelyard_runtime_ready") == 1
    assert metric(skops_rt, "process_resident_memory_bytes") > 10 * 2**20


def test_http_keep_alive_chunked_and_connection_close(skops_rt, lr, data):
    X, _ = data
    body = json.dumps({"inputs": X[:2].tolist()}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", skops_rt.port, timeout=10)
    try:
        for _ in range(3):  # the same socket answers several requests
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {
                "predictions": lr.predict(X[:2]).tolist()
            }
            assert resp.getheader("Connection") is None
        sock = conn.sock
        chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        conn.request(
            "POST", "/invocations", body=iter([body[:10], body[10:]]), encode_chunked=True, headers=chunked
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["predictions"] == lr.predict(X[:2]).tolist()
        assert conn.sock is sock
        conn.request("GET", "/ping", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        assert resp.getheader("Connection") == "close"
    finally:
        conn.close()


def test_named_columns_are_checked_and_reordered(frame_rt, frame_lr, data):
    model, cols = frame_lr
    X, _ = data
    rows = X[:3]
    expected = model.predict(pd.DataFrame(rows, columns=cols)).tolist()
    order = list(reversed(range(N_FEATURES)))
    payload = {"dataframe_split": {"columns": [cols[i] for i in order], "data": rows[:, order].tolist()}}
    assert frame_rt.call("POST", "/invocations", payload) == (200, {"predictions": expected})
    records = [dict(zip(cols, r, strict=True)) for r in rows.tolist()]
    assert frame_rt.call("POST", "/invocations", {"dataframe_records": records}) == (
        200,
        {"predictions": expected},
    )
    # positional rows are taken in the fitted column order
    assert frame_rt.call("POST", "/invocations", {"inputs": rows.tolist()}) == (
        200,
        {"predictions": expected},
    )
    # one v2 tensor per column (MLServer's pandas codec)
    req = {
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": rows[:, i].tolist()}
            for i, c in enumerate(cols)
        ]
    }
    status, body = frame_rt.call("POST", "/v2/models/framed/infer", req)
    assert status == 200 and body["outputs"][0]["data"] == expected

    for rec in records:
        del rec["f3"], rec["f7"]
    status, body = frame_rt.call("POST", "/invocations", {"dataframe_records": records})
    assert status == 400 and body["message"] == "missing columns: f3, f7"
    status, body = frame_rt.call("POST", "/v2/models/framed/infer", {"inputs": req["inputs"][:-1]})
    assert status == 400 and "missing columns: f19" in body["error"]
    assert frame_rt.alive()


def test_a_model_error_is_a_500_and_the_server_keeps_running(lr, data, workdir):
    broken = LogisticRegression(max_iter=500).fit(*data)
    broken.coef_ = "not an array"  # predict() raises AttributeError inside scikit-learn
    d = workdir / "broken"
    d.mkdir()
    sio.dump(broken, d / "model.skops")
    rt = start(d, "broken", tmp=workdir)
    try:
        status, body = rt.call("POST", "/invocations", {"inputs": [[0.0] * N_FEATURES]})
        assert status == 500 and body["message"].startswith("prediction failed: AttributeError")
        req = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}]}
        status, body = rt.call("POST", "/v2/models/broken/infer", req)
        assert status == 500 and "prediction failed" in body["error"]
        assert rt.alive()
        assert metric(rt, "modelyard_runtime_request_errors_total", protocol="v2", kind="server") == 1
    finally:
        rt.stop()
    assert "AttributeError" in rt.proc.stderr.read()


# -- ONNX ------------------------------------------------------------------------------------------------


def test_onnx_model_served_with_both_protocols(lr, data, workdir):
    from skl2onnx import to_onnx

    X, _ = data
    x32 = X.astype(np.float32)
    d = workdir / "onnx"
    d.mkdir()
    (d / "model.onnx").write_bytes(to_onnx(lr, x32[:1], options={"zipmap": False}).SerializeToString())
    rt = start(d, "lr-onnx", tmp=workdir)
    try:
        status, meta = rt.call("GET", "/v2/models/lr-onnx")
        assert status == 200 and meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
        rows = x32[:6]
        req = {
            "id": "o1",
            "inputs": [{"name": "X", "shape": [6, 20], "datatype": "FP32", "data": rows.ravel().tolist()}],
        }
        status, body = rt.call("POST", "/v2/models/lr-onnx/infer", req)
        assert status == 200, body
        label, proba = body["outputs"]
        assert label["data"] == lr.predict(rows).tolist() and label["datatype"] == "INT64"
        assert proba["shape"] == [6, 2] and proba["datatype"] == "FP32"
        np.testing.assert_allclose(np.reshape(proba["data"], (6, 2)), lr.predict_proba(rows), atol=1e-5)
        req["outputs"] = [{"name": "label"}]
        assert [o["name"] for o in rt.call("POST", "/v2/models/lr-onnx/infer", req)[1]["outputs"]] == [
            "label"
        ]

        status, body = rt.call("POST", "/invocations", {"instances": rows.tolist()})
        assert status == 200
        assert [p["label"] for p in body["predictions"]] == lr.predict(rows).tolist()
        np.testing.assert_allclose(
            [p["probabilities"] for p in body["predictions"]], lr.predict_proba(rows), atol=1e-5
        )

        status, body = rt.call("POST", "/invocations", {"instances": [[1.0, 2.0]]})
        assert status == 400 and "expected 20 features" in body["message"]
        bad = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        status, body = rt.call("POST", "/v2/models/lr-onnx/infer", bad)
        assert status == 400 and "expected shape [-1, 20]" in body["error"]
        assert rt.alive()
    finally:
        rt.stop()


# -- MLflow model directories ---------------------------------------------------------------------------


def mlmodel(flavor: str, body: str, signature: bool = True) -> str:
    """An MLmodel file as MLflow 3.17's `mlflow.sklearn.save_model` writes it (copied from one it wrote;
    hand-written here because mlflow is not a test dependency)."""
    text = f"""artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.{flavor}
    model_path: model.skops
    predict_fn: predict
    python_version: 3.11.7
  {flavor}:
{body}
mlflow_version: 3.17.0
model_uuid: 0f1e2d3c4b5a69788796a5b4c3d2e1f0
"""
    if signature:
        cols = [{"type": "double", "name": f"x{i}", "required": True} for i in range(N_FEATURES)]
        text += (
            "signature:\n  inputs: '"
            + json.dumps(cols)
            + '\'\n  outputs: \'[{"type": "long", "required": true}]\'\n'
        )
    return text


def test_mlflow_directory_with_skops_sklearn_flavor(lr, data, workdir):
    X, _ = data
    d = workdir / "mlflow-skops"
    d.mkdir()
    sio.dump(lr, d / "model.skops")
    body = "    code: null\n    pickled_model: model.skops\n    serialization_format: skops\n"
    body += "    sklearn_version: 1.9.1\n    skops_trusted_types: null"
    (d / "MLmodel").write_text(mlmodel("sklearn", body))
    (d / "requirements.txt").write_text("scikit-learn==1.9.1\nskops\n")
    rt = start(d, "mlf", tmp=workdir)
    try:
        rows = X[:4]
        cols = [f"x{i}" for i in range(N_FEATURES)]
        records = [dict(zip(cols, r, strict=True)) for r in rows.tolist()]
        expected = lr.predict(rows).tolist()
        assert rt.call("POST", "/invocations", {"dataframe_records": records}) == (
            200,
            {"predictions": expected},
        )
        for rec in records:
            rec["x0"] = "text"
        status, body = rt.call("POST", "/invocations", {"dataframe_records": records})
        assert status == 400 and body["message"] == "column 'x0': expected a number, got 'text'"
        del records[0]["x5"]
        status, body = rt.call("POST", "/invocations", {"dataframe_records": records[:1]})
        assert status == 400 and body["message"] == "missing columns: x5"
        status, meta = rt.call("GET", "/v2/models/mlf")
        assert meta["outputs"][0]["datatype"] == "INT64" and meta["parameters"]["format"] == "skops"
    finally:
        rt.stop()


def test_mlflow_directory_with_pickled_sklearn_needs_allow_pickle(lr, data, workdir):
    X, _ = data
    d = workdir / "mlflow-pickle"
    d.mkdir()
    with open(d / "model.pkl", "wb") as fh:
        pickle.dump(lr, fh)
    body = "    pickled_model: model.pkl\n    serialization_format: cloudpickle\n    sklearn_version: 1.9.1"
    (d / "MLmodel").write_text(mlmodel("sklearn", body, signature=False))

    proc = launch(d, "mlp", tmp=workdir)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3
    assert "refusing to load model.pkl" in err and "security_scan" in err
    assert json.loads(out.splitlines()[-1])["event"] == "refused"
    assert not proc.port_file.exists()

    rt = start(d, "mlp", "--allow-pickle", tmp=workdir)
    try:
        rows = X[:3]
        assert rt.call("POST", "/invocations", {"inputs": rows.tolist()}) == (
            200,
            {"predictions": lr.predict(rows).tolist()},
        )
    finally:
        rt.stop()


# -- pickles and untrusted types -------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["model.pkl", "model.joblib"])
def test_pickle_is_refused_without_allow_pickle_and_served_with_it(lr, data, workdir, filename):
    import joblib

    X, _ = data
    d = workdir / f"pickle-{filename}"
    d.mkdir()
    joblib.dump(lr, d / filename)
    proc = launch(d, "pk", tmp=workdir)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 3 and f"refusing to load {filename}" in err

    rt = start(d, "pk", "--allow-pickle", tmp=workdir)
    try:
        status, body = rt.call("POST", "/invocations", {"inputs": X[:5].tolist()})
        assert (status, body) == (200, {"predictions": lr.predict(X[:5]).tolist()})
        req = {"inputs": [{"name": "in", "shape": [1, 20], "datatype": "FP64", "data": X[0].tolist()}]}
        status, body = rt.call("POST", "/v2/models/pk/infer", req)
        assert status == 200 and body["outputs"][0]["data"] == lr.predict(X[:1]).tolist()
    finally:
        rt.stop()


def test_skops_with_types_outside_sklearn_numpy_scipy_is_refused(data, workdir):
    X, _ = data
    d = workdir / "skops-untrusted"
    d.mkdir()
    sio.dump(FunctionTransformer(func=math.sqrt).fit(X), d / "model.skops")
    proc = launch(d, "untrusted", tmp=workdir)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 3
    assert "types outside scikit-learn, NumPy and SciPy (math.sqrt)" in err


def test_no_model_is_a_clear_load_failure(workdir):
    d = workdir / "empty"
    d.mkdir()
    (d / "README.md").write_text("nothing to serve")
    proc = launch(d, "none", tmp=workdir)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 4
    assert "no model found" in err and "README.md" in err


# -- XGBoost and LightGBM native files (dev extra) --------------------------------------------------------


def test_xgboost_booster_file(data, workdir):
    xgb = pytest.importorskip("xgboost")
    X, y = data
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), 10)
    d = workdir / "xgb"
    d.mkdir()
    booster.save_model(d / "model.ubj")
    rt = start(d, "xgb", tmp=workdir)
    try:
        rows = X[:5]
        expected = booster.predict(xgb.DMatrix(rows))
        status, body = rt.call("POST", "/invocations", {"inputs": rows.tolist()})
        assert status == 200
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)
        req = {"inputs": [{"name": "x", "shape": [5, 20], "datatype": "FP32", "data": rows.ravel().tolist()}]}
        status, body = rt.call("POST", "/v2/models/xgb/infer", req)
        assert status == 200 and body["outputs"][0]["shape"] == [5]
        np.testing.assert_allclose(body["outputs"][0]["data"], expected, rtol=1e-6)
        status, body = rt.call("POST", "/invocations", {"inputs": [[1.0] * 3]})
        assert status == 400 and "expected 20 features" in body["message"]
    finally:
        rt.stop()


def test_lightgbm_model_file(data, workdir):
    lgb = pytest.importorskip("lightgbm")
    X, y = data
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, label=y), 10)
    d = workdir / "lgb"
    d.mkdir()
    booster.save_model(d / "model.txt")
    rt = start(d, "lgb", tmp=workdir)
    try:
        rows = X[:5]
        status, body = rt.call("POST", "/invocations", {"dataframe_split": {"data": rows.tolist()}})
        assert status == 200
        np.testing.assert_allclose(body["predictions"], booster.predict(rows), rtol=1e-9)
        assert rt.call("GET", "/v2/models/lgb")[1]["platform"] == "lightgbm"
    finally:
        rt.stop()


def test_sigterm_stops_the_runtime(skops_rt, lr, workdir):
    d = workdir / "skops-lr"
    rt = start(d, "again", tmp=workdir)
    assert rt.alive()
    rt.conn.close()
    rt.proc.terminate()
    assert rt.proc.wait(10) == 0
    assert os.path.exists(rt.proc.port_file)


def test_oversized_bodies_are_413_and_other_methods_405(skops_rt, workdir):
    rt = start(workdir / "skops-lr", "small", "--max-body-mib", "1", tmp=workdir)
    try:
        status, body = rt.call(
            "POST", "/invocations", b"[" + b"0," * 600_000 + b"0]", {"Content-Type": "application/json"}
        )
        assert status == 413 and "over 1048576 bytes" in body["error"]
        assert rt.call("PUT", "/invocations", b"{}")[0] == 405
        assert rt.call("GET", "/version") == (200, b"1.0")
        assert rt.alive()
        assert metric(rt, "modelyard_runtime_request_errors_total", kind="client") >= 1
    finally:
        rt.stop()
