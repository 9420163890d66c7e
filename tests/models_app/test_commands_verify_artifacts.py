"""verify_artifacts re-hashes stored content and finds damage."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from models_app import services


def test_verify_passes_then_detects_a_damaged_blob(owner, internal_model, store, capsys):
    version = services.model_version_create(actor=owner, model=internal_model)
    services.version_file_upload(
        actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"weights"), size=7
    )
    services.model_version_finalize(actor=owner, version=version)
    call_command("verify_artifacts")
    assert "Verified 1 blob(s) and 1 version manifest(s); 0 problem(s)." in capsys.readouterr().out
    item = version.files.get()
    if store.kind == "folder":
        path = store._file(item.blob.storage_key)
        path.write_bytes(b"tampered")
    else:
        store.client.put_object(Bucket=store.bucket, Key=store._key(item.blob.storage_key), Body=b"tampered")
    with pytest.raises(CommandError):
        call_command("verify_artifacts")
