"""Resumable uploads in parts: straight to S3 with presigned URLs, or through the API on a folder."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from models_app import services
from models_app.models import Blob, UploadSession, VersionFile

V = "/api/v1/models/churn/versions/1"
PART = 5 * 1024 * 1024


@pytest.fixture
def version(owner, internal_model, store):
    return services.model_version_create(actor=owner, model=internal_model)


def send_part(client, part: dict, data: bytes, target: str):
    if target == "s3":  # presigned: no registry credentials go to the bucket
        response = requests.put(part["url"], data=data, timeout=30)
        assert response.status_code == 200, response.text
        return
    path = part["url"].split("testserver", 1)[-1]
    response = client.generic("PUT", path, data, content_type="application/octet-stream")
    assert response.status_code == 200, response.content


def test_parts_upload_resume_and_complete(api, owner, version, store):
    client = api(owner)
    data = os.urandom(2 * PART + 1234)
    digest = hashlib.sha256(data).hexdigest()
    begin = client.post(
        f"{V}/files/big/weights.bin/multipart",
        {"size": len(data), "sha256": digest, "part_size": PART},
        format="json",
    )
    assert begin.status_code == 201, begin.content
    body = begin.json()
    assert body["part_count"] == 3 and body["part_size"] == PART
    assert body["target"] == ("s3" if store.kind == "s3" else "registry")
    chunks = [data[i : i + PART] for i in range(0, len(data), PART)]
    # Send part 2 first, then "crash": the client asks what is left and resumes.
    send_part(client, body["parts"][1], chunks[1], body["target"])
    state = client.get(f"/api/v1/uploads/{body['upload_id']}").json()
    assert [p["part_number"] for p in state["uploaded_parts"]] == [2]
    assert [p["part_number"] for p in state["parts"]] == [1, 3]
    for part in state["parts"]:
        send_part(client, part, chunks[part["part_number"] - 1], state["target"])
    done = client.post(f"/api/v1/uploads/{body['upload_id']}/complete")
    assert done.status_code == 201, done.content
    assert done.json() == {"path": "big/weights.bin", "size": len(data), "sha256": digest}
    got = client.get(f"{V}/files/big/weights.bin?redirect=false")
    assert b"".join(got.streaming_content) == data
    assert UploadSession.objects.get().state == "completed"
    assert client.post(f"/api/v1/uploads/{body['upload_id']}/complete").status_code == 409


def test_completion_with_the_wrong_content_keeps_nothing(api, owner, version, store):
    client = api(owner)
    data = os.urandom(1000)
    body = client.post(
        f"{V}/files/w.bin/multipart",
        {"size": 1000, "sha256": hashlib.sha256(b"other").hexdigest()},
        format="json",
    ).json()
    send_part(client, body["parts"][0], data, body["target"])
    response = client.post(f"/api/v1/uploads/{body['upload_id']}/complete")
    assert response.status_code == 409 and response.json()["error"] == "digest_mismatch"
    assert not VersionFile.objects.exists() and not Blob.objects.exists()
    assert list(store.list_blob_keys()) == []


def test_missing_parts_are_named(api, owner, version):
    client = api(owner)
    data = os.urandom(PART + 10)
    body = client.post(
        f"{V}/files/w.bin/multipart",
        {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "part_size": PART},
        format="json",
    ).json()
    response = client.post(f"/api/v1/uploads/{body['upload_id']}/complete")
    assert response.status_code == 400 and "1, 2" in response.json()["message"]


@pytest.mark.parametrize("store", ["folder"], indirect=True)  # S3 enforces part sizes itself
def test_folder_parts_must_have_the_announced_size(api, owner, version, store):
    client = api(owner)
    body = client.post(f"{V}/files/w.bin/multipart", {"size": 100, "sha256": "a" * 64}, format="json").json()
    path = body["parts"][0]["url"].split("testserver", 1)[-1]
    response = client.generic("PUT", path, b"x" * 99, content_type="application/octet-stream")
    assert response.status_code == 400 and "100 bytes" in response.json()["message"]
    assert (
        client.put(
            path.replace("/parts/1", "/parts/2"), b"x", content_type="application/octet-stream"
        ).status_code
        == 400
    )


def test_abort_closes_the_upload(api, owner, version):
    client = api(owner)
    body = client.post(f"{V}/files/w.bin/multipart", {"size": 10, "sha256": "b" * 64}, format="json").json()
    assert client.delete(f"/api/v1/uploads/{body['upload_id']}").status_code == 204
    assert UploadSession.objects.get().state == "aborted"
    assert client.post(f"/api/v1/uploads/{body['upload_id']}/complete").status_code == 409


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"size": -1, "sha256": "a" * 64}, "size"),
        ({"size": 1, "sha256": "xyz"}, "sha256"),
        ({"size": 1}, "sha256"),
    ],
)
def test_bad_begin_requests_are_400(api, owner, version, payload, field):
    response = api(owner).post(f"{V}/files/w.bin/multipart", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]
    assert not UploadSession.objects.exists()


def test_a_file_named_multipart_still_works(api, owner, version):
    client = api(owner)
    response = client.generic(
        "PUT", f"{V}/files/dir/multipart", b"abc", content_type="application/octet-stream"
    )
    assert response.status_code == 201 and response.json()["path"] == "dir/multipart"
    got = client.get(f"{V}/files/dir/multipart?redirect=false")
    assert b"".join(got.streaming_content) == b"abc"


def test_deleting_a_version_releases_its_open_uploads(
    api, owner, version, store, django_capture_on_commit_callbacks
):
    client = api(owner)
    data = os.urandom(PART + 1)
    body = client.post(
        f"{V}/files/w.bin/multipart",
        {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "part_size": PART},
        format="json",
    ).json()
    send_part(client, body["parts"][0], data[:PART], body["target"])
    session = UploadSession.objects.get()
    assert store.parts_list(session.staging_key, session.backend_upload_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(V + "/").status_code == 204
    assert not UploadSession.objects.exists()
    assert store.parts_list(session.staging_key, session.backend_upload_id) == []
