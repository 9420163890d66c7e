"""``manage.py verify_artifacts``: re-hash every stored blob and re-check every manifest digest.

Exit status 1 when anything is missing or damaged: for restore drills and periodic audits.
"""

from __future__ import annotations

import hashlib

from django.core.management.base import BaseCommand, CommandError

from models_app import artifacts
from models_app.choices import VersionStatus
from models_app.models import Blob, ModelVersion


class Command(BaseCommand):
    help = "Verify the SHA-256 of every referenced blob and the manifest digest of every READY version."

    def handle(self, *args, **options):
        store = artifacts.get_store()
        problems: list[str] = []
        checked = 0
        for blob in Blob.objects.filter(version_files__isnull=False).distinct().iterator():
            digest, size = hashlib.sha256(), 0
            try:
                for chunk in store.iter_bytes(blob.sha256):
                    digest.update(chunk)
                    size += len(chunk)
            except (OSError, Exception) as exc:  # a missing object is a finding, not a crash
                problems.append(f"blob {blob.sha256}: unreadable ({type(exc).__name__})")
                continue
            checked += 1
            if digest.hexdigest() != blob.sha256 or size != blob.size:
                problems.append(f"blob {blob.sha256}: content does not match its digest or size")
        versions = 0
        for version in ModelVersion.objects.filter(status=VersionStatus.READY).select_related("model"):
            versions += 1
            entries = [(f.path, f.blob_id, f.blob.size) for f in version.files.select_related("blob")]
            if artifacts.manifest_digest(entries) != version.manifest_digest:
                problems.append(f"{version}: manifest digest differs")
        for line in problems:
            self.stderr.write(line)
        self.stdout.write(
            f"Verified {checked} blob(s) and {versions} version manifest(s); {len(problems)} problem(s)."
        )
        if problems:
            raise CommandError("artifact verification failed")
