"""Artifact-store fixtures: every storage test runs on the folder store and on S3 (moto server)."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from models_app import artifacts


def s3_settings(endpoint: str, bucket: str) -> dict:
    from django.conf import settings

    storages = dict(settings.STORAGES)
    storages["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": "modelyard",
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "default_acl": None,
            "file_overwrite": True,
            "querystring_expire": 900,
            "addressing_style": "path",
        },
    }
    return {"STORAGES": storages, "S3_BUCKET": bucket}


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
    with override_settings(**overrides):
        artifacts.get_store.cache_clear()
        yield artifacts.get_store()
    artifacts.get_store.cache_clear()
