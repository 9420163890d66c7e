"""gc_blobs: unreferenced content goes after the grace period; nothing referenced or awaited does."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from models_app import services
from models_app.models import Blob


@pytest.fixture
def version(owner, internal_model, store):
    return services.model_version_create(actor=owner, model=internal_model)


def upload(owner, version, path: str, data: bytes):
    return services.version_file_upload(
        actor=owner, version=version, path=path, stream=io.BytesIO(data), size=len(data)
    )


def age_all_blobs() -> None:
    Blob.objects.update(created_at=timezone.now() - timedelta(days=2))


def test_unreferenced_blobs_are_removed_after_the_grace_period(owner, version, store):
    kept = upload(owner, version, "kept.bin", b"kept").blob_id
    gone = upload(owner, version, "gone.bin", b"gone").blob_id
    services.version_file_delete(actor=owner, version=version, path="gone.bin")
    assert services.blob_gc(grace=timedelta(hours=1)).blobs_deleted == 0  # still within grace
    age_all_blobs()
    report = services.blob_gc(grace=timedelta(hours=1), dry_run=True)
    assert report.blobs_deleted == 1 and store.exists(gone)  # a dry run removes nothing
    report = services.blob_gc(grace=timedelta(hours=1))
    assert (report.blobs_deleted, report.bytes_freed) == (1, 4)
    assert not store.exists(gone) and not Blob.objects.filter(pk=gone).exists()
    assert store.exists(kept)


def test_content_awaited_by_an_open_upload_is_kept(owner, version, store):
    data = b"in flight"
    sha = upload(owner, version, "x.bin", data).blob_id
    services.version_file_delete(actor=owner, version=version, path="x.bin")
    services.upload_session_begin(actor=owner, version=version, path="y.bin", size=len(data), sha256=sha)
    age_all_blobs()
    report = services.blob_gc(grace=timedelta(hours=1))
    assert report.blobs_deleted == 0 and report.kept_in_flight == 1
    assert store.exists(sha)


def test_an_upload_after_gc_places_the_bytes_again(owner, version, store):
    data = b"comes back"
    sha = upload(owner, version, "a.bin", data).blob_id
    services.version_file_delete(actor=owner, version=version, path="a.bin")
    age_all_blobs()
    services.blob_gc(grace=timedelta(hours=1))
    assert not store.exists(sha)
    upload(owner, version, "a.bin", data)
    assert store.exists(sha) and b"".join(store.iter_bytes(sha)) == data


def test_orphaned_objects_and_expired_uploads_are_cleaned(owner, version, store, monkeypatch):
    data = b"orphan"
    sha = upload(owner, version, "o.bin", data).blob_id
    services.version_file_delete(actor=owner, version=version, path="o.bin")
    Blob.objects.filter(pk=sha).delete()  # as if the process died between placing and committing
    session = services.upload_session_begin(
        actor=owner, version=version, path="z.bin", size=1, sha256="c" * 64
    )
    type(session).objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    report = services.blob_gc(grace=timedelta(seconds=-60))  # every object counts as old
    assert report.orphans_deleted == 1 and report.uploads_expired == 1
    assert not store.exists(sha)


def test_gc_command_reports(owner, version, store, capsys):
    call_command("gc_blobs", "--dry-run", "--grace-hours", "1")
    assert "Would remove 0 blob(s)" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_attaching_one_blob_twice_at_once_does_not_queue_but_gc_keeps_off(
    postgres, owner, internal_model, store
):
    """Attach holds a shared lock on the blobs it references until its transaction ends: a
    second version attaching the same content goes ahead at once (versions registered from one
    logged model used to queue one behind the other), and gc cannot delete the blob meanwhile."""
    from django.db import connection, transaction

    from tests.concurrency import held_transaction

    first, second = (services.model_version_create(actor=owner, model=internal_model) for _ in range(2))
    blob = upload(owner, first, "w.bin", b"shared weights").blob
    holder = services.model_version_create(actor=owner, model=internal_model)
    attach = [{"path": "w.bin", "sha256": blob.sha256}]

    with held_transaction(lambda: services.version_files_attach(actor=owner, version=holder, files=attach)):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")  # a FOR UPDATE lock would time out here
            result = services.version_files_attach(actor=owner, version=second, files=attach)
        assert [f["path"] for f in result["attached"]] == ["w.bin"]
        with transaction.atomic():
            skipped = Blob.objects.select_for_update(skip_locked=True).filter(pk=blob.pk).first()
        assert skipped is None  # blob_gc's own lock: it skips the blob while an attach holds it
