"""Transfers against a live registry: pulls verified, resumed, corruption caught; dedup and resume proven
server-side through the live server's own request log and audit trail."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from models_app import artifacts
from models_app.models import AuditEvent, ModelVersion, UploadSession
from tests.client.conftest import write_tree

MiB = 1024 * 1024


def blob(size: int, seed: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def test_pull_downloads_and_verifies_every_file(registry, any_store, tmp_path, request_log):
    files = {"model.bin": blob(3 * MiB + 17, 1), "tokenizer/vocab.txt": b"a\nb\n", "empty.txt": b""}
    source = write_tree(tmp_path / "src", files)
    with registry.client(quiet=True) as client:
        client.multipart_threshold = 2 * MiB  # model.bin goes in parts (presigned on S3)
        client.part_size = 5 * MiB
        pushed = client.push(source, model="churn", alias="candidate", capture_lineage=False)
    assert pushed.version == 1

    out = tmp_path / "out"
    result = registry.cli("pull", "churn@candidate", "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["version"], body["files"]) == (1, 3)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert not list(out.rglob("*.modelyard-part"))

    # A second pull finds everything in place and verified: nothing is downloaded again.
    request_log.clear()
    again = registry.cli("pull", "churn:1", "-o", out, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["downloaded"] == []
    assert not [
        p for m, p, _, _ in request_log if m == "GET" and "/files/" in p and not p.endswith("/files/")
    ]


def test_pull_resumes_a_partial_download_with_range(registry, any_store, tmp_path, request_log):
    """On S3 the Range goes on to the presigned URL: only the missing bytes leave the bucket."""
    data = blob(2 * MiB + 5, 2)
    with registry.client() as client:
        client.push(write_tree(tmp_path / "src", {"model.bin": data}), model="churn", capture_lineage=False)
        out = tmp_path / "out"
        out.mkdir()
        (out / "model.bin.modelyard-part").write_bytes(data[: MiB + 3])  # an interrupted earlier pull
        request_log.clear()
        result = client.pull("churn", out)
    assert (out / "model.bin").read_bytes() == data
    ranged = [r for m, p, _, r in request_log if m == "GET" and p.endswith("/files/model.bin")]
    assert ranged == [f"bytes={MiB + 3}-"]  # the server was asked only for the rest
    assert result.bytes_received == len(data) - (MiB + 3)


def test_a_corrupted_stored_file_is_detected(registry, folder_store, tmp_path):
    data = blob(MiB, 3)
    with registry.client() as client:
        client.push(
            write_tree(tmp_path / "src", {"weights/model.bin": data}), model="churn", capture_lineage=False
        )
    sha = hashlib.sha256(data).hexdigest()
    stored = folder_store._file(artifacts.blob_key(sha))
    damaged = bytearray(stored.read_bytes())
    damaged[1000] ^= 0xFF  # same size: only the digest can tell
    stored.write_bytes(bytes(damaged))

    out = tmp_path / "out"
    result = registry.cli("pull", "churn:1", "-o", out)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "weights/model.bin" in lines[0] and sha in lines[0] and "corrupt" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (out / "weights" / "model.bin").exists()
    assert not list(out.rglob("*.modelyard-part"))


def test_pushing_the_same_model_twice_sends_no_file_bytes(registry, any_store, tmp_path, request_log):
    files = {"model.bin": blob(6 * MiB + 1, 4), "conf/a.json": b"{}", "conf/b.json": b"[1]"}
    source = write_tree(tmp_path / "src", files)
    with registry.client() as client:
        client.multipart_threshold = 4 * MiB
        first = client.push(source, model="churn", capture_lineage=False)
        assert first.version == 1
        sent_first = sum(n for m, p, n, _ in request_log if m == "PUT")
        # The log sees file bytes: all of them on the folder store, the small files on S3 (parts go
        # straight to the bucket there).
        assert sent_first >= (sum(map(len, files.values())) if any_store.kind == "folder" else 5)
        assert UploadSession.objects.filter(version__version=1, path="model.bin").exists()

        request_log.clear()
        second = client.push(source, model="churn", capture_lineage=False)
    assert second.version == 2
    puts = [(p, n) for m, p, n, _ in request_log if m == "PUT"]
    assert puts == []  # not a byte of file content reached the registry…
    v2 = ModelVersion.objects.get(model__name="churn", version=2)
    actions = list(AuditEvent.objects.filter(object_id=str(v2.pk)).values_list("action", flat=True))
    assert sorted(a for a in actions if a.startswith(("file.", "upload."))) == ["file.attached"] * 3
    assert not UploadSession.objects.filter(version=v2).exists()  # …nor any presigned part URL issued
    assert v2.status == "READY"
    assert v2.manifest_digest == ModelVersion.objects.get(model__name="churn", version=1).manifest_digest


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["folder", "s3"])
def test_a_killed_push_resumes_without_resending_finished_parts(
    registry, backend, tmp_path, request_log, request
):
    """SIGKILL a push after some parts, rerun it: only the unfinished parts are sent again.

    Proven by what the storage side received: the live server's request log on folder storage,
    the S3 proxy's log of presigned part PUTs on S3.
    """
    if backend == "folder":
        store = request.getfixturevalue("folder_store")
        proxy = None
    else:
        store, proxy = request.getfixturevalue("s3_proxy_store")
    part = 5 * MiB
    size = 6 * part + 12345  # 7 parts
    data = blob(size, 5)
    source = write_tree(tmp_path / "src", {"big.bin": data, "small.txt": b"small"})
    env = registry.env(
        MODELYARD_MULTIPART_THRESHOLD="1MiB",
        MODELYARD_PART_SIZE="5MiB",
        MODELYARD_JOBS="2",
        MODELYARD_MAX_RATE="6MiB",  # about six seconds for the whole file: time to kill it halfway
    )
    push = registry.command("push", source, "--model", "big", "--quiet", "--no-lineage")
    proc = subprocess.Popen(push, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        done: list[dict] = []
        while time.monotonic() < deadline and proc.poll() is None:
            session = UploadSession.objects.filter(version__model__name="big").first()
            if session is not None:
                done = store.parts_list(session.staging_key, session.backend_upload_id)
                if len(done) >= 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the push finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # let the server settle requests cut short by the kill

    session = UploadSession.objects.get(version__model__name="big")
    assert session.state == "open" and session.part_count == 7
    finished = {p["part_number"] for p in store.parts_list(session.staging_key, session.backend_upload_id)}
    assert 2 <= len(finished) < 7
    assert ModelVersion.objects.get(model__name="big", version=1).status == "PENDING"

    request_log.clear()
    if proxy is not None:
        proxy.log.clear()
    rerun = subprocess.run(
        push, env={**env, "MODELYARD_MAX_RATE": "0"}, cwd=tmp_path, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip().endswith(f"big version 1: {registry.url}/models/big/versions/1/")

    if proxy is None:
        prefix = f"/api/v1/uploads/{session.id}/parts/"
        resent = [
            (int(p.rsplit("/", 1)[1]), n) for m, p, n, _ in request_log if m == "PUT" and p.startswith(prefix)
        ]
    else:
        resent = [
            (int(parse_qs(urlsplit(p).query)["partNumber"][0]), n)
            for m, p, n in proxy.log
            if m == "PUT" and "partNumber=" in p
        ]
        assert not [
            p for m, p, _, _ in request_log if m == "PUT" and "/uploads/" in p
        ]  # bytes bypass the API
    assert {number for number, _ in resent} == set(range(1, 8)) - finished  # only the unfinished parts
    assert sum(n for _, n in resent) == size - sum(part if k < 7 else size - 6 * part for k in finished)
    assert not [p for m, p, _, _ in request_log if m == "POST" and p.endswith("/multipart")]  # same session

    version = ModelVersion.objects.get(model__name="big", version=1)
    assert version.status == "READY"
    assert not ModelVersion.objects.filter(model__name="big", version=2).exists()
    assert {f.path: f.blob_id for f in version.files.all()} == {
        "big.bin": hashlib.sha256(data).hexdigest(),
        "small.txt": hashlib.sha256(b"small").hexdigest(),
    }
    assert UploadSession.objects.get(pk=session.pk).state == "completed"
    out = tmp_path / "out"
    with registry.client() as client:
        client.pull("big:1", out)
    assert (out / "big.bin").read_bytes() == data


def test_failed_requests_are_retried_with_backoff(registry, folder_store, tmp_path, request_log):
    """The live server fails the first attempt of one part and of one small file (a 500 from the
    WSGI server); the push retries them and succeeds, and each is received exactly twice."""
    from django.core.signals import request_started

    failed: list[str] = []

    def fail_once(sender, environ=None, **kwargs):
        path = environ.get("PATH_INFO", "") if environ else ""
        is_target = environ.get("REQUEST_METHOD") == "PUT" and path.endswith(("/parts/2", "/files/small.txt"))
        if is_target and path not in failed:
            failed.append(path)
            raise RuntimeError("injected failure")

    data = blob(11 * MiB, 6)
    source = write_tree(tmp_path / "src", {"big.bin": data, "small.txt": b"small"})
    request_started.connect(fail_once, weak=False, dispatch_uid="client-fail-once")
    try:
        with registry.client(jobs=2) as client:
            client.multipart_threshold = 1 * MiB
            client.part_size = 5 * MiB
            result = client.push(source, model="flaky", capture_lineage=False)
    finally:
        request_started.disconnect(dispatch_uid="client-fail-once")
    assert len(failed) == 2
    for path in failed:
        assert [p for m, p, _, _ in request_log if m == "PUT" and p == path] == [path, path]
    version = ModelVersion.objects.get(model__name="flaky", version=result.version)
    assert version.status == "READY"
    assert {f.path: f.blob_id for f in version.files.all()}["big.bin"] == hashlib.sha256(data).hexdigest()
