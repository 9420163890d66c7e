"""Files of model versions, stored once by content (SHA-256) whatever the backend."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from models_app.choices import UploadState


class Blob(models.Model):
    """Content stored once in the artifact store, addressed by its SHA-256.

    The row exists only when the bytes are in the store: it is created in the same transaction
    that put them there, and ``gc_blobs`` deletes the bytes before the row.
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"sha256:{self.sha256[:12]}… ({self.size} B)"

    @property
    def storage_key(self) -> str:
        return blob_key(self.sha256)


def blob_key(sha256: str) -> str:
    """Where a blob lives in the store: fanned out so no folder or prefix grows too large."""
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class VersionFile(models.Model):
    """One path of a version's file tree, pointing at a blob."""

    version = models.ForeignKey("models_app.ModelVersion", on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="version_files")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="versionfile_version_path_unique")
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def permission_team_id(self) -> int:
        return self.version.model.team_id

    @property
    def permission_model(self):
        """The registered model whose visibility and team govern this object."""
        return self.version.model


class UploadSession(models.Model):
    """A resumable upload of one file in parts (straight to S3, or through the API on a folder).

    The parts live under ``uploads/<id>`` until completion checks size and SHA-256 and moves
    the content to its blob key. ``gc_blobs`` aborts sessions left open past their expiry.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    version = models.ForeignKey("models_app.ModelVersion", on_delete=models.CASCADE, related_name="uploads")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    part_size = models.BigIntegerField()
    backend = models.CharField(max_length=16)
    backend_upload_id = models.CharField(max_length=1024, blank=True)
    state = models.CharField(
        max_length=16, choices=UploadState.choices, default=UploadState.OPEN, db_index=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.id} of {self.path}"

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))

    @property
    def staging_key(self) -> str:
        return f"uploads/{self.id}"
