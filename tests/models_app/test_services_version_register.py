"""``model_version_register``: a READY version from content the registry holds, in one
transaction, with the checks and audit records of create + attach + finalize."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from models_app import artifacts, services
from models_app.choices import VersionStatus
from models_app.models import AuditEvent, ModelVersion, RegisteredModel, VersionFile
from registry_project.errors import Conflict

CONTENTS = {"MLmodel": b"flavors: {}\n", "model.pkl": b"weights" * 100}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files(owner, internal_model, store) -> list[dict]:
    """Two files held by a READY version of ``internal_model`` (so ``owner`` may read them)."""
    held = services.model_version_create(actor=owner, model=internal_model)
    for path, data in CONTENTS.items():
        services.version_file_upload(
            actor=owner, version=held, path=path, stream=io.BytesIO(data), size=len(data)
        )
    services.model_version_finalize(actor=owner, version=held)
    return [{"path": path, "sha256": sha(data)} for path, data in CONTENTS.items()]


def _trail(version: ModelVersion) -> list[tuple[str, dict | None, dict | None]]:
    events = AuditEvent.objects.filter(object_type="ModelVersion", object_id=str(version.pk)).order_by("id")
    return [(e.action, e.before, e.after) for e in events]


def _without_numbers(trail: list) -> list:
    def strip(state: dict | None) -> dict | None:
        return state and {k: v for k, v in state.items() if k != "version"}

    return [(action, strip(before), strip(after)) for action, before, after in trail]


def _nothing_created(model: RegisteredModel, versions_before: int) -> None:
    model.refresh_from_db()
    assert ModelVersion.objects.filter(model=model).count() == versions_before
    assert model.last_version_number == versions_before  # the number was given back


def test_a_registered_version_is_what_create_attach_finalize_make(owner, internal_model, files):
    stepwise = services.model_version_create(actor=owner, model=internal_model, source="s3://x")
    services.version_files_attach(actor=owner, version=stepwise, files=files)
    stepwise = services.model_version_finalize(actor=owner, version=stepwise)

    version = services.model_version_register(
        actor=owner, model=internal_model, files=files, source="s3://x", tags={"team": "churn"}
    )

    version.refresh_from_db()
    assert (version.version, version.status) == (3, VersionStatus.READY)
    assert version.finalized_at is not None and version.created_by == owner
    assert version.manifest_digest == stepwise.manifest_digest
    assert sorted(VersionFile.objects.filter(version=version).values_list("path", "blob_id")) == sorted(
        (f["path"], f["sha256"]) for f in files
    )
    assert dict(version.tags.values_list("key", "value")) == {"team": "churn"}
    # The same records, in the same order and with the same states, as the three calls write.
    assert _without_numbers(_trail(version)) == _without_numbers(_trail(stepwise))
    assert _trail(version)[0] == (
        "version.created",
        None,
        {"version": 3, "status": "PENDING", "description": "", "source": "s3://x"},
    )


def test_registering_queues_the_version_ready_hooks_after_commit(
    owner, internal_model, files, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        services.model_version_register(actor=owner, model=internal_model, files=files)
    assert len(callbacks) == 1  # version_ready_task.delay, as after a finalize


def test_provenance_is_written_before_ready_and_audited_between_files_and_finalize(
    owner, internal_model, files
):
    seen = []

    def provenance(version, attached):
        assert version.pk is not None and ModelVersion.objects.filter(pk=version.pk).exists()
        seen.append(sorted(attached, key=lambda item: item["path"]))
        return [("lineage.set", None, {"run": {"id": "r1"}})]

    version = services.model_version_register(
        actor=owner, model=internal_model, files=files, provenance=provenance
    )
    assert seen == [
        sorted(
            ({"path": p, "sha256": sha(d), "size": len(d)} for p, d in CONTENTS.items()),
            key=lambda item: item["path"],
        )
    ]
    actions = [action for action, _, _ in _trail(version)]
    assert actions == [
        "version.created",
        "file.attached",
        "file.attached",
        "lineage.set",
        "version.finalized",
    ]


def test_a_failing_provenance_leaves_nothing(owner, internal_model, files):
    def provenance(version, attached):
        raise ValidationError({"lineage": "bad"})

    with pytest.raises(ValidationError):
        services.model_version_register(actor=owner, model=internal_model, files=files, provenance=provenance)
    _nothing_created(internal_model, 1)
    assert not AuditEvent.objects.filter(action="lineage.set").exists()


def test_viewers_and_outsiders_cannot_register(viewer, outsider, owner, private_model, files):
    held = ModelVersion.objects.get(version=1)
    for actor in (viewer, outsider):
        with pytest.raises(PermissionDenied):
            services.model_version_register(actor=actor, model=held.model, files=files)
        _nothing_created(held.model, 1)
    with pytest.raises(PermissionDenied):
        services.model_version_register(actor=outsider, model=private_model, files=files)
    _nothing_created(private_model, 0)


def test_content_the_actor_cannot_read_is_refused_and_nothing_is_created(
    owner, outsider, other_team, private_model, store
):
    secret = services.model_version_create(actor=owner, model=private_model)
    services.version_file_upload(
        actor=owner, version=secret, path="secret.bin", stream=io.BytesIO(b"secret"), size=6
    )
    mine = services.registered_model_create(actor=outsider, name="mine", team=other_team)
    wanted = [{"path": "copy.bin", "sha256": sha(b"secret")}, {"path": "none.bin", "sha256": "0" * 64}]
    with pytest.raises(PermissionDenied, match=r"copy\.bin, none\.bin"):
        services.model_version_register(actor=outsider, model=mine, files=wanted)
    _nothing_created(mine, 0)
    # Vouched for by another route (an MLflow run the actor can read), the same content is taken.
    version = services.model_version_register(
        actor=outsider, model=mine, files=wanted[:1], vouched_blobs=frozenset({sha(b"secret")})
    )
    assert version.status == VersionStatus.READY and version.version == 1


def test_bytes_missing_from_the_store_are_refused_and_nothing_is_created(owner, internal_model, files):
    artifacts.get_store().delete(files[1]["sha256"])
    with pytest.raises(Conflict, match=r"model\.pkl") as raised:
        services.model_version_register(actor=owner, model=internal_model, files=files)
    assert raised.value.code == "files_damaged"
    _nothing_created(internal_model, 1)


def test_bad_file_lists_are_refused_naming_the_field(owner, internal_model, files, settings):
    with pytest.raises(ValidationError) as raised:
        services.model_version_register(actor=owner, model=internal_model, files=[])
    assert "files" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        services.model_version_register(
            actor=owner, model=internal_model, files=[{"path": "../x", "sha256": files[0]["sha256"]}]
        )
    assert "path" in raised.value.message_dict
    settings.MODELYARD_MAX_FILES_PER_VERSION = 1
    with pytest.raises(ValidationError, match="at most 1 files"):
        services.model_version_register(actor=owner, model=internal_model, files=files)
    with pytest.raises(ValidationError) as raised:
        services.model_version_register(actor=owner, model=internal_model, files=files[:1], source="x" * 5000)
    assert "source" in raised.value.message_dict
    _nothing_created(internal_model, 1)
