"""Built-in checks run when a version becomes READY: security_scan, then loadable in a sandbox."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from models_app import services
from models_app.models import Check, ModelVersion
from models_app.tasks import version_ready_task


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/modelyard-pwned",))


def model_bytes() -> tuple[bytes, bytes]:
    model = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]), [0, 0, 1, 1])
    example = json.dumps({"columns": ["a", "b"], "data": [[0.5, 1.0]]}).encode()
    return sio.dumps(model), example


def finalize_with(owner, model, files: dict[str, bytes], django_capture_on_commit_callbacks) -> ModelVersion:
    version = services.model_version_create(actor=owner, model=model)
    for path, data in files.items():
        services.version_file_upload(
            actor=owner, version=version, path=path, stream=io.BytesIO(data), size=len(data)
        )
    with django_capture_on_commit_callbacks() as callbacks:
        services.model_version_finalize(actor=owner, version=version)
    assert len(callbacks) == 1  # the ready task is enqueued after commit
    version_ready_task.apply(kwargs={"version_id": version.pk})  # what the worker runs, in-process
    return version


def checks_of(version) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.summary) for c in Check.objects.filter(version=version)}


def test_a_skops_model_passes_both_checks(owner, internal_model, django_capture_on_commit_callbacks):
    skops_bytes, example = model_bytes()
    version = finalize_with(
        owner,
        internal_model,
        {"model.skops": skops_bytes, "input_example.json": example},
        django_capture_on_commit_callbacks,
    )
    checks = checks_of(version)
    assert checks["security_scan"] == ("passed", "No pickle-based files.")
    assert checks["loadable"][0] == "passed", checks["loadable"]
    assert "skops" in checks["loadable"][1] and "1 row" in checks["loadable"][1]


def test_a_malicious_pickle_fails_the_scan_and_is_never_loaded(
    owner, internal_model, django_capture_on_commit_callbacks
):
    if os.path.exists("/tmp/modelyard-pwned"):
        os.unlink("/tmp/modelyard-pwned")
    version = finalize_with(
        owner,
        internal_model,
        {"model.pkl": pickle.dumps(Exploit(), protocol=4)},
        django_capture_on_commit_callbacks,
    )
    checks = checks_of(version)
    assert checks["security_scan"][0] == "failed" and "posix.system" in checks["security_scan"][1]
    assert checks["loadable"][0] == "failed" and "security_scan has not passed" in checks["loadable"][1]
    assert not os.path.exists("/tmp/modelyard-pwned")


def test_a_clean_pickle_is_scanned_then_loaded(owner, internal_model, django_capture_on_commit_callbacks):
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    version = finalize_with(
        owner,
        internal_model,
        {"model.pkl": pickle.dumps(model, protocol=4)},
        django_capture_on_commit_callbacks,
    )
    checks = checks_of(version)
    assert checks["security_scan"][0] == "passed"
    assert checks["loadable"][0] == "passed", checks["loadable"]


def test_a_model_that_does_not_load_fails_loadable(owner, internal_model, django_capture_on_commit_callbacks):
    version = finalize_with(
        owner,
        internal_model,
        {"model.skops": b"not a zip at all", "README.md": b"hi"},
        django_capture_on_commit_callbacks,
    )
    status, summary = checks_of(version)["loadable"]
    assert status == "failed" and summary


def test_a_model_over_the_memory_limit_is_stopped(
    owner, internal_model, settings, django_capture_on_commit_callbacks
):
    settings.MODELYARD_CHECK_MEMORY_MB = 64  # far too little to even import NumPy and scikit-learn
    skops_bytes, example = model_bytes()
    version = finalize_with(
        owner,
        internal_model,
        {"model.skops": skops_bytes, "input_example.json": example},
        django_capture_on_commit_callbacks,
    )
    status, summary = checks_of(version)["loadable"]
    assert status == "failed" and ("MemoryError" in summary or "crashed" in summary), summary


def test_the_loader_rescans_a_text_pickle_hidden_under_another_name(tmp_path):
    """An MLmodel pointing at a protocol-0 pickle named model.bin: security_scan does not see a
    pickle there, so the sandboxed loader scans it itself and refuses to unpickle it."""
    from models_app.services_governance import _load_in_sandbox

    marker = tmp_path / "pwned"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.bin\n")
    (tmp_path / "m" / "model.bin").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    outcome = _load_in_sandbox(tmp_path / "m", allow_pickle=True)
    assert not outcome["ok"]
    assert "refusing to unpickle model.bin" in outcome["error"] and "os.system" in outcome["error"]
    assert not marker.exists()
