"""Artifact-store fixtures: every storage test runs on the folder store and on S3 (moto server)."""

from __future__ import annotations

import uuid

import pytest

from models_app import artifacts
from tests.conftest import s3_settings


@pytest.fixture(params=["folder", "s3"])
def store(request, settings, tmp_path):
    """The artifact store under test, fresh and empty."""
    artifacts.get_store.cache_clear()
    if request.param == "folder":
        storages = dict(settings.STORAGES)
        storages["artifacts"] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "artifacts")},
        }
        overrides = {"STORAGES": storages, "S3_BUCKET": "", "ARTIFACT_STORAGE_PATH": tmp_path / "artifacts"}
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        overrides = s3_settings(endpoint, bucket)
    # Through pytest-django's ``settings`` (not a nested override_settings): a test that changes
    # settings too is then undone in the right order, and no tmp store leaks into later tests.
    for name, value in overrides.items():
        setattr(settings, name, value)
    artifacts.get_store.cache_clear()
    yield artifacts.get_store()
    artifacts.get_store.cache_clear()
