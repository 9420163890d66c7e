"""Fixtures of the deployment tests: deployer personas, READY versions of real models, runtimes.

Models are real (scikit-learn via skops, ONNX via skl2onnx, pickles), stored through the
artifact services like any upload, so deployments materialize them from the artifact store.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from models_app import services
from models_app.choices import TeamRole
from models_app.models import ModelVersion
from tests.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [0.5, 0.2], [2.5, 0.9]])
Y = [0, 0, 1, 1, 0, 1]


class Exploit:
    """Unpickling this runs a shell command: security_scan must flag it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/modelyard-deploy-pwned",))


def sklearn_model(flip: bool = False):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, [1 - y for y in Y] if flip else Y)


def skops_files(flip: bool = False) -> dict[str, bytes]:
    import skops.io as sio

    example = json.dumps({"columns": ["a", "b"], "data": [[0.5, 1.0]]}).encode()
    return {"model.skops": sio.dumps(sklearn_model(flip)), "input_example.json": example}


def onnx_files() -> dict[str, bytes]:
    from skl2onnx import to_onnx

    onx = to_onnx(sklearn_model(), X[:1].astype(np.float32), target_opset=17)
    return {"model.onnx": onx.SerializeToString()}


def malicious_pickle_files() -> dict[str, bytes]:
    return {"model.pkl": pickle.dumps(Exploit(), protocol=4)}


def ready_version(owner, model, files: dict[str, bytes], *, run_checks: bool = False) -> ModelVersion:
    """Upload ``files`` as a new version and finalize it (running the built-in checks if asked)."""
    version = services.model_version_create(actor=owner, model=model)
    for path, data in files.items():
        services.version_file_upload(
            actor=owner, version=version, path=path, stream=io.BytesIO(data), size=len(data)
        )
    services.model_version_finalize(actor=owner, version=version)
    if run_checks:
        from models_app.services_governance import builtin_checks_run

        builtin_checks_run(version_id=version.pk)
    version.refresh_from_db()
    return version


@pytest.fixture
def deployer(team):
    return make_user("deployer", team=team, role=TeamRole.DEPLOYER)


@pytest.fixture
def outsider_deployer(other_team):
    """Deploys for another team: allowed to deploy in general, never on ``risk``'s models."""
    return make_user("outsider-deployer", team=other_team, role=TeamRole.DEPLOYER)


@pytest.fixture
def skops_version(owner, internal_model):
    return ready_version(owner, internal_model, skops_files())


@pytest.fixture
def private_skops_version(owner, private_model):
    return ready_version(owner, private_model, skops_files())


def start_runtime(model_dir: Path, name: str) -> tuple[subprocess.Popen, str]:
    """A real serving runtime on 127.0.0.1 (a free port), for proxy tests of external deployments."""
    port_file = Path(tempfile.mkdtemp(prefix="modelyard-rt-")) / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments_app.runtime", "--model-dir", str(model_dir), "--name", name,
         "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)],
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip().isdigit():
            return proc, f"http://127.0.0.1:{int(port_file.read_text())}"
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}")
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("runtime did not start")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def external_runtime(tmp_path_factory):
    """A runtime serving a skops model as deployment name ``ext``: what an external tool runs."""
    model_dir = tmp_path_factory.mktemp("ext-model")
    for path, data in skops_files().items():
        (model_dir / path).write_bytes(data)
    proc, url = start_runtime(model_dir, "ext")
    yield url
    stop_process(proc)
