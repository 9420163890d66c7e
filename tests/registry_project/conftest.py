"""A seeded catalog for the reliability and security suites (fuzz, permission matrix, leaks).

Two teams: ``risk`` (owner = contributor, viewer, approver, deployer) owns a PRIVATE model
``fraud`` and an INTERNAL model ``churn``; ``outsider`` contributes to ``marketing``. ``fraud``
has a PENDING version 1 (a file, alias ``candidate``, a half-done upload session) and a READY
version 2 with lineage (TensorFlow 2.11.0, commit ``a*40``) flagged by an advisory; ``churn``
has a READY version 1. A webhook of each team exists. Private text carries ``SECRET_MARK`` so
leak tests can grep every answer for it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User

from models_app import artifacts, services, services_events
from models_app.choices import TeamRole, Visibility
from models_app.models import PromotionPolicy, UploadSession
from tests.conftest import make_user

SECRET_MARK = "zq-secret-7f3a"
UPLOAD_ID = "0b7c1a9e-5f7e-4c43-9d0c-6a4be0c2f001"


def lineage_doc(*, commit: str, tf: str = "2.11.0", mark: str = SECRET_MARK) -> dict:
    # Datasets are shared rows keyed by digest: each model gets its own digest here, so the
    # leak tests see what is private to the model (see the report on shared dataset rows).
    return {
        "code": {"repo_url": "https://git.example.com/risk/m.git", "commit": commit, "branch": "main"},
        "environment": {"python": "3.11.7", "packages": [{"name": "TensorFlow", "version": tf}]},
        "datasets": [{"name": f"tx-{mark}", "uri": "s3://b/tx.parquet", "digest": f"sha256:{commit[:8]}"}],
        "run": {"id": f"run-{mark}", "metrics": {"auc": 0.9}},
    }


ADVISORY = {
    "id": "GHSA-test-tf01",
    "summary": "Heap overflow in tensorflow",
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "TensorFlow"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.1"}]}],
        }
    ],
}


@dataclass
class Catalog:
    fraud: object
    churn: object
    users: dict


def _version_with_lineage(owner, model, commit: str, tf: str = "2.11.0"):
    mark = SECRET_MARK if model.visibility == Visibility.PRIVATE else "public"
    from lineage_app import services as lineage

    version = services.model_version_create(actor=owner, model=model, description=f"v {mark}")
    lineage.lineage_set(actor=owner, version=version, document=lineage_doc(commit=commit, tf=tf, mark=mark))
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=version)
    return version


def seed_catalog(*, team, other_team, owner, viewer, outsider, approver, admin_user) -> Catalog:
    from lineage_app import services as lineage

    deployer = User.objects.filter(username="deployer").first() or make_user(
        "deployer", team=team, role=TeamRole.DEPLOYER
    )
    fraud = services.registered_model_create(
        actor=owner,
        name="fraud",
        team=team,
        description=f"Flags fraud {SECRET_MARK}",
        visibility=Visibility.PRIVATE,
        tags={"task": "classification", "secret": SECRET_MARK},
    )
    churn = services.registered_model_create(
        actor=owner, name="churn", team=team, description="Predicts churn.", tags={"task": "classification"}
    )
    pending = services.model_version_create(actor=owner, model=fraud, tags={"stage": "candidate"})
    services.version_file_upload(
        actor=owner, version=pending, path="m.bin", stream=io.BytesIO(b"data"), size=4
    )
    services.model_alias_set(actor=owner, model=fraud, alias="candidate", version=pending)
    _version_with_lineage(owner, fraud, "a" * 40)
    PromotionPolicy.objects.update_or_create(model=fraud, defaults={"required_checks": {}})
    _version_with_lineage(owner, churn, "b" * 40, tf="2.12.0")  # not affected
    session = services.upload_session_begin(
        actor=owner, version=pending, path="parts.bin", size=4, sha256=hashlib.sha256(b"data").hexdigest()
    )
    UploadSession.objects.filter(pk=session.pk).update(id=UPLOAD_ID)
    session = UploadSession.objects.get(pk=UPLOAD_ID)
    artifacts.get_store().parts_begin(session.staging_key)
    services.upload_session_part_write(
        actor=owner, session=session, part_number=1, stream=io.BytesIO(b"data"), size=4
    )
    lineage.advisory_import(actor=admin_user, records=[ADVISORY])
    for user in (owner, outsider):
        services_events.webhook_create(
            actor=user, name=f"hook-{user.username}", url="http://127.0.0.1:9/hook", events=["*"]
        )
    users = {
        "owner": owner,
        "viewer": viewer,
        "outsider": outsider,
        "approver": approver,
        "deployer": deployer,
        "admin": admin_user,
    }
    return Catalog(fraud=fraud, churn=churn, users=users)


@pytest.fixture
def catalog(team, other_team, owner, viewer, outsider, approver, admin_user, settings, tmp_path) -> Catalog:
    """The seeded catalog on a fresh artifact folder (whatever store earlier tests configured)."""
    storages = dict(settings.STORAGES)
    storages["artifacts"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "artifacts")},
    }
    settings.STORAGES, settings.S3_BUCKET = storages, ""
    settings.ARTIFACT_STORAGE_PATH = tmp_path / "artifacts"
    artifacts.get_store.cache_clear()
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True  # the seeded hooks point at a closed local port
    seeded = seed_catalog(
        team=team,
        other_team=other_team,
        owner=owner,
        viewer=viewer,
        outsider=outsider,
        approver=approver,
        admin_user=admin_user,
    )
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = False
    return seeded
