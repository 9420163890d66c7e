"""The version-ready hooks run once per READY version, and the sweep queues them again for
versions whose queueing after finalize was lost (broker down, process killed after commit)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db.models import F

from models_app import services
from models_app.models import ModelVersion
from models_app.tasks import version_ready_hooks_sweep_task, version_ready_task
from registry_project.celery import app as celery_app

GRACE = timedelta(minutes=61)  # past the default grace of 60 minutes
calls: list[int] = []


def record(*, version_id: int) -> None:
    """The one version-ready hook of these tests: it records which versions it ran for."""
    calls.append(version_id)


def fail(*, version_id: int) -> None:
    raise RuntimeError("the hook failed")


@pytest.fixture
def hooks(settings) -> list[int]:
    settings.MODELYARD_VERSION_READY_HOOKS = [f"{__name__}.record"]
    calls.clear()
    return calls


@pytest.fixture
def eager():
    """Queued tasks run in-process at once (Celery's own test mode), as a worker would run them."""
    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = saved


@pytest.fixture
def finalize(owner, internal_model, django_capture_on_commit_callbacks):
    def finalize(*, queued: bool) -> ModelVersion:
        """A READY version; ``queued=False``: the queueing after commit never happens."""
        version = services.model_version_create(actor=owner, model=internal_model)
        services.version_file_upload(
            actor=owner, version=version, path="model.bin", stream=io.BytesIO(b"w"), size=1
        )
        with django_capture_on_commit_callbacks(execute=queued) as callbacks:
            services.model_version_finalize(actor=owner, version=version)
        assert len(callbacks) == 1  # version_ready_task.delay
        version.refresh_from_db()
        return version

    return finalize


def test_a_version_whose_queueing_was_lost_gets_its_hooks_from_the_sweep(hooks, eager, finalize):
    version = finalize(queued=False)
    assert version.ready_hooks_done_at is None
    assert hooks == []
    assert services.version_ready_hooks_sweep() == []  # within the grace: it may still be queued
    later = version.finalized_at + GRACE
    assert services.version_ready_hooks_sweep(now=later) == [version.pk]
    assert hooks == [version.pk]
    version.refresh_from_db()
    assert version.ready_hooks_done_at is not None
    assert services.version_ready_hooks_sweep(now=later) == []  # nothing owed any more
    assert hooks == [version.pk]


def test_the_hooks_run_once_and_a_second_copy_of_the_task_does_nothing(hooks, eager, finalize):
    version = finalize(queued=True)
    assert hooks == [version.pk]
    version.refresh_from_db()
    done = version.ready_hooks_done_at
    assert done is not None
    version_ready_task.apply(kwargs={"version_id": version.pk})  # a copy queued by a sweep
    version.refresh_from_db()
    assert hooks == [version.pk]
    assert version.ready_hooks_done_at == done
    assert services.version_ready_hooks_sweep(now=version.finalized_at + GRACE) == []


def test_a_hook_that_fails_leaves_the_version_owed(hooks, eager, finalize, settings):
    settings.MODELYARD_VERSION_READY_HOOKS = [f"{__name__}.record", f"{__name__}.fail"]
    version = finalize(queued=False)
    with pytest.raises(RuntimeError, match="the hook failed"):
        version_ready_task.apply(kwargs={"version_id": version.pk}, throw=True)
    assert hooks == [version.pk]
    version.refresh_from_db()
    assert version.ready_hooks_done_at is None
    assert services.version_ready_hooks_sweep(now=version.finalized_at + GRACE) == [version.pk]


def test_the_sweep_takes_only_ready_versions_owed_their_hooks_within_its_window(
    hooks, eager, finalize, owner, internal_model, settings, monkeypatch
):
    done = finalize(queued=True)
    pending = services.model_version_create(actor=owner, model=internal_model)
    recent, old, older = (finalize(queued=False) for _ in range(3))
    ModelVersion.objects.filter(pk=old.pk).update(finalized_at=F("finalized_at") - timedelta(days=6))
    ModelVersion.objects.filter(pk=older.pk).update(finalized_at=F("finalized_at") - timedelta(days=8))
    now = recent.finalized_at + GRACE
    hooks.clear()

    monkeypatch.setattr(services, "SWEEP_BATCH", 1)  # the oldest first, one per run
    assert services.version_ready_hooks_sweep(now=now) == [old.pk]
    monkeypatch.setattr(services, "SWEEP_BATCH", 500)
    assert services.version_ready_hooks_sweep(now=now) == [recent.pk]  # older: past the 7 days
    settings.MODELYARD_READY_HOOKS_SWEEP_DAYS = 10
    assert services.version_ready_hooks_sweep(now=now) == [older.pk]
    assert hooks == [old.pk, recent.pk, older.pk]
    assert done.pk not in hooks and pending.pk not in hooks
    assert not ModelVersion.objects.filter(pk=pending.pk, ready_hooks_done_at__isnull=False).exists()


def test_the_periodic_task_sweeps(hooks, eager, finalize):
    version = finalize(queued=False)
    ModelVersion.objects.filter(pk=version.pk).update(finalized_at=F("finalized_at") - GRACE)
    version_ready_hooks_sweep_task.apply()
    assert hooks == [version.pk]
    schedule = django_settings.CELERY_BEAT_SCHEDULE["version-ready-hooks-sweep"]
    assert schedule["task"] == version_ready_hooks_sweep_task.name
