"""Migration 0012: versions READY before it are taken as done with their hooks (at finalize), so
the sweep does not queue the checks of the whole history again."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from models_app import services
from models_app.models import ModelVersion

BEFORE = [("models_app", "0011_search_document_trigger_on_change")]
AFTER = [("models_app", "0012_version_ready_hooks_done")]


@pytest.mark.django_db(transaction=True)
def test_versions_ready_before_the_migration_are_done_at_their_finalize(owner, internal_model):
    ready = services.model_version_create(actor=owner, model=internal_model)
    services.version_file_upload(actor=owner, version=ready, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=ready)
    pending = services.model_version_create(actor=owner, model=internal_model)

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    executor.migrate(AFTER)

    ready.refresh_from_db()
    assert ready.ready_hooks_done_at == ready.finalized_at is not None
    assert ModelVersion.objects.get(pk=pending.pk).ready_hooks_done_at is None
    assert services.version_ready_hooks_sweep(now=ready.finalized_at + timedelta(hours=2)) == []
