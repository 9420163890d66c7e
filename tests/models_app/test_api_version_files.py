"""Files of a version through the API, on the folder store and on S3 (moto server)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import threading

import pytest
import requests
from django.db import connection

from models_app import services
from models_app.choices import VersionStatus
from models_app.models import AuditEvent, Blob, ModelVersion, VersionFile

V = "/api/v1/models/churn/versions/1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def version(owner, internal_model, store):
    return services.model_version_create(actor=owner, model=internal_model)


def put(client, path: str, data: bytes, **headers):
    return client.generic(
        "PUT", f"{V}/files/{path}", data, content_type="application/octet-stream", **headers
    )


def get_bytes(client, path: str, **headers) -> tuple[int, bytes, object]:
    response = client.get(f"{V}/files/{path}?redirect=false", **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response


def test_upload_list_download_round_trip(api, owner, version):
    client = api(owner)
    data = os.urandom(3 * 1024 * 1024 + 17)
    response = put(client, "model/weights.bin", data, HTTP_X_CONTENT_SHA256=sha(data))
    assert response.status_code == 201, response.content
    assert response.json() == {"path": "model/weights.bin", "size": len(data), "sha256": sha(data)}
    assert client.get(f"{V}/files/").json() == [
        {"path": "model/weights.bin", "size": len(data), "sha256": sha(data)}
    ]
    status, body, resp = get_bytes(client, "model/weights.bin")
    assert status == 200 and body == data
    assert resp["ETag"] == f'"{sha(data)}"' and resp["Content-Length"] == str(len(data))
    assert AuditEvent.objects.filter(action="file.uploaded").count() == 1


def test_range_and_conditional_downloads(api, owner, version):
    client = api(owner)
    data = bytes(range(256)) * 100
    put(client, "m.bin", data)
    status, body, resp = get_bytes(client, "m.bin", HTTP_RANGE="bytes=10-19")
    assert (status, body, resp["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    status, body, _ = get_bytes(client, "m.bin", HTTP_RANGE="bytes=-5")
    assert (status, body) == (206, data[-5:])
    status, body, _ = get_bytes(client, "m.bin", HTTP_RANGE=f"bytes={len(data) - 3}-")
    assert (status, body) == (206, data[-3:])
    status, _, resp = get_bytes(client, "m.bin", HTTP_RANGE=f"bytes={len(data)}-")
    assert status == 416 and resp["Content-Range"] == f"bytes */{len(data)}"
    status, _, _ = get_bytes(client, "m.bin", HTTP_IF_NONE_MATCH=f'"{sha(data)}"')
    assert status == 304


def test_s3_downloads_redirect_to_a_presigned_url(api, owner, version, store):
    client = api(owner)
    data = b"hello s3" * 1000
    put(client, "m.bin", data)
    response = client.get(f"{V}/files/m.bin")
    if store.kind == "folder":
        assert response.status_code == 200
        return
    assert response.status_code == 302
    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == data


def test_digest_mismatch_is_409_and_keeps_nothing(api, owner, version, store):
    client = api(owner)
    response = put(client, "m.bin", b"actual bytes", HTTP_X_CONTENT_SHA256=sha(b"other bytes"))
    assert response.status_code == 409
    assert response.json()["error"] == "digest_mismatch"
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert list(store.list_blob_keys()) == []


@pytest.mark.django_db(transaction=True)
def test_a_client_that_disconnects_mid_upload_leaves_nothing(live_server, owner, internal_model, store):
    """A real socket announces 1 MiB, sends 1,000 bytes and hangs up."""
    import socket
    import time
    from urllib.parse import urlparse

    services.model_version_create(actor=owner, model=internal_model)
    _token, raw = services.access_token_create(actor=owner, user=owner, name="t", scopes=["write"])
    url = urlparse(live_server.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            (
                f"PUT {V}/files/m.bin HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {raw}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
            ).encode()
            + b"x" * 1000
        )
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.recv(1024)  # the server answers (400) or just closes
    time.sleep(0.2)
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert list(store.list_blob_keys()) == []
    spool = store.spool_dir()
    assert not spool.exists() or not any(spool.iterdir())


@pytest.mark.parametrize(
    "path",
    [
        "../escape.bin",
        "%2e%2e/escape.bin",
        "a/../../escape.bin",
        "a/./b",
        "a//b",
        "a\\b",
        "%2Fetc%2Fpasswd",
        "a%00b",
    ],
)
def test_path_traversal_is_refused_and_nothing_is_written(api, owner, version, store, tmp_path, path):
    response = put(api(owner), path, b"evil")
    assert response.status_code in (400, 404), response.content
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert not (tmp_path / "escape.bin").exists()


def test_a_ready_version_refuses_new_files(api, owner, version):
    client = api(owner)
    put(client, "m.bin", b"weights")
    assert client.post(f"{V}/finalize").status_code == 200
    response = put(client, "other.bin", b"more")
    assert response.status_code == 409
    assert response.json()["error"] == "version_frozen"
    assert client.delete(f"{V}/files/m.bin").status_code == 409
    assert list(VersionFile.objects.values_list("path", flat=True)) == ["m.bin"]


def test_finalize_records_the_manifest_and_needs_files(api, owner, version):
    client = api(owner)
    response = client.post(f"{V}/finalize")
    assert response.status_code == 400 and "files" in response.json()["fields"]
    put(client, "b.bin", b"bbb")
    put(client, "a.bin", b"aa")
    response = client.post(f"{V}/finalize")
    assert response.status_code == 200
    assert response.json()["status"] == "READY"
    version.refresh_from_db()
    expected = hashlib.sha256(f"a.bin\0{sha(b'aa')}\0{2}\nb.bin\0{sha(b'bbb')}\0{3}\n".encode()).hexdigest()
    assert version.manifest_digest == expected
    assert client.post(f"{V}/finalize").status_code == 409  # only PENDING versions finalize


def test_finalize_detects_damaged_storage(api, owner, version, store):
    client = api(owner)
    put(client, "m.bin", b"weights")
    store.delete(sha(b"weights"))
    response = client.post(f"{V}/finalize")
    assert response.status_code == 409 and "m.bin" in response.json()["message"]
    assert ModelVersion.objects.get(pk=version.pk).status == VersionStatus.PENDING


def test_known_content_is_attached_without_sending_bytes(api, owner, internal_model, version):
    client = api(owner)
    data = os.urandom(100_000)
    put(client, "weights.bin", data)
    v2 = services.model_version_create(actor=owner, model=internal_model)
    response = client.post(
        f"/api/v1/models/churn/versions/{v2.version}/files/",
        {
            "files": [
                {"path": "weights.bin", "sha256": sha(data)},
                {"path": "new.bin", "sha256": sha(b"unknown")},
            ]
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {
        "attached": [{"path": "weights.bin", "sha256": sha(data), "size": len(data)}],
        "missing": [{"path": "new.bin", "sha256": sha(b"unknown")}],
    }
    assert Blob.objects.count() == 1  # stored once
    _status, body, _ = get_bytes(client, "weights.bin")
    assert body == data


def test_attach_does_not_reveal_content_of_private_models(
    api, owner, outsider, other_team, private_model, store
):
    pv = services.model_version_create(actor=owner, model=private_model)
    services.version_file_upload(
        actor=owner, version=pv, path="secret.bin", stream=io.BytesIO(b"secret"), size=6
    )
    mine = services.registered_model_create(actor=outsider, name="mine", team=other_team)
    services.model_version_create(actor=outsider, model=mine)
    response = api(outsider).post(
        "/api/v1/models/mine/versions/1/files/",
        {"files": [{"path": "x", "sha256": sha(b"secret")}]},
        format="json",
    )
    assert response.json()["attached"] == [] and len(response.json()["missing"]) == 1


def test_attaching_many_files_costs_the_same_queries_as_one_and_audits_each(
    api, owner, internal_model, version, settings, django_assert_max_num_queries
):
    client = api(owner)
    contents = [os.urandom(64) for _ in range(12)]
    for index, data in enumerate(contents):
        put(client, f"f{index}.bin", data)
    files = [{"path": f"copy/{i}.bin", "sha256": sha(data)} for i, data in enumerate(contents)]

    def attach(number: int, entries: list[dict]):
        return client.post(
            f"/api/v1/models/churn/versions/{number}/files/", {"files": entries}, format="json"
        )

    one = services.model_version_create(actor=owner, model=internal_model)
    with django_assert_max_num_queries(40) as one_file:
        assert attach(one.version, files[:1]).status_code == 200
    many = services.model_version_create(actor=owner, model=internal_model)
    with django_assert_max_num_queries(len(one_file.captured_queries)):
        response = attach(many.version, files)
    assert response.status_code == 200 and len(response.json()["attached"]) == 12
    assert sorted(VersionFile.objects.filter(version=many).values_list("path", flat=True)) == sorted(
        f["path"] for f in files
    )
    events = AuditEvent.objects.filter(action="file.attached", object_id=str(many.pk))
    assert sorted(e.after["path"] for e in events) == sorted(f["path"] for f in files)

    # A path named twice takes its last digest; a re-attach records what it replaced.
    again = [
        {"path": "copy/0.bin", "sha256": sha(contents[1])},
        {"path": "copy/0.bin", "sha256": sha(contents[2])},
    ]
    assert attach(many.version, again).json()["attached"] == [
        {"path": "copy/0.bin", "sha256": sha(contents[2]), "size": 64}
    ]
    assert VersionFile.objects.get(version=many, path="copy/0.bin").blob_id == sha(contents[2])
    latest = AuditEvent.objects.filter(action="file.attached", object_id=str(many.pk)).order_by("-id")[0]
    assert latest.before == {"path": "copy/0.bin", "sha256": sha(contents[0]), "size": 64}

    # The file limit counts the whole batch: nothing of a refused batch is kept.
    settings.MODELYARD_MAX_FILES_PER_VERSION = 13
    extra = services.model_version_create(actor=owner, model=internal_model)
    assert attach(extra.version, files).status_code == 200
    too_many = [{"path": f"more/{i}.bin", "sha256": sha(contents[i])} for i in range(2)]
    response = attach(extra.version, too_many)
    assert response.status_code == 400 and "at most 13 files" in response.json()["message"]
    assert VersionFile.objects.filter(version=extra).count() == 12


def test_archive_streams_a_tar_of_the_tree(api, owner, version):
    client = api(owner)
    files = {"MLmodel": b"flavors: {}\n", "model/model.skops": os.urandom(5000), "empty.txt": b""}
    for path, data in files.items():
        put(client, path, data)
    client.post(f"{V}/finalize")
    response = client.get(f"{V}/archive")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-tar"
    raw = b"".join(response.streaming_content)
    assert len(raw) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert got == files


def test_files_by_alias(api, owner, internal_model, version):
    client = api(owner)
    put(client, "m.bin", b"candidate weights")
    client.post(f"{V}/finalize")
    client.put("/api/v1/models/churn/aliases/candidate", {"version": 1}, format="json")
    assert client.get("/api/v1/models/churn/aliases/candidate/files/").json()[0]["path"] == "m.bin"
    response = client.get("/api/v1/models/churn/aliases/candidate/files/m.bin?redirect=false")
    assert b"".join(response.streaming_content) == b"candidate weights"
    assert (
        client.put(
            "/api/v1/models/churn/aliases/candidate/files/x", b"", content_type="application/octet-stream"
        ).status_code
        == 405
    )


def test_downloads_are_permission_checked_like_metadata(api, owner, outsider, private_model, store):
    pv = services.model_version_create(actor=owner, model=private_model)
    services.version_file_upload(actor=owner, version=pv, path="m.bin", stream=io.BytesIO(b"secret"), size=6)
    client = api(outsider)
    assert client.get("/api/v1/models/fraud/versions/1/files/m.bin").status_code == 404
    assert client.get("/api/v1/models/fraud/versions/1/files/").status_code == 404
    assert client.get("/api/v1/models/fraud/versions/1/archive").status_code == 404


def test_upload_limits(api, owner, version, settings):
    settings.MODELYARD_MAX_FILE_SIZE = 10
    settings.MODELYARD_MAX_FILES_PER_VERSION = 1
    client = api(owner)
    assert put(client, "big.bin", b"x" * 11).status_code == 400
    assert put(client, "a.bin", b"x").status_code == 201
    assert put(client, "a.bin", b"y").status_code == 201  # replacing a path is not a new file
    assert put(client, "b.bin", b"x").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_same_content_uploaded_concurrently_to_two_versions(owner, team, store):
    model = services.registered_model_create(actor=owner, name="churn", team=team)
    versions = [services.model_version_create(actor=owner, model=model) for _ in range(2)]
    data = os.urandom(2 * 1024 * 1024)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def upload(v: ModelVersion) -> None:
        try:
            barrier.wait()
            services.version_file_upload(
                actor=owner, version=v, path="w.bin", stream=io.BytesIO(data), size=len(data)
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Blob.objects.count() == 1 and VersionFile.objects.count() == 2
    assert b"".join(store.iter_bytes(sha(data))) == data


def test_bytes_lost_from_the_store_are_a_clear_503_not_a_cut_stream(api, owner, version, store):
    """A file row whose bytes vanished from the store (a deleted file or bucket key): both
    download doors answer an error before any byte, instead of a 200 cut off after its headers."""
    from models_app import artifacts

    client = api(owner)
    assert put(client, "m.bin", b"weights").status_code == 201
    artifacts.get_store().delete(sha(b"weights"))
    status, _body, response = get_bytes(client, "m.bin")
    assert status == 503 and not response.streaming
    assert response.json()["error"] == "blob_missing" and "verify_artifacts" in response.json()["message"]
    mlflow = client.get("/api/2.0/mlflow-artifacts/artifacts/_registry/churn/1/m.bin")
    assert mlflow.status_code == 503 and not mlflow.streaming
    assert mlflow.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert VersionFile.objects.filter(version=version, path="m.bin").exists()  # nothing else changed
