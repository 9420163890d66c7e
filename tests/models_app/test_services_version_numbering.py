"""Version numbers under concurrency: exactly 1..N, no gap and no duplicate."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from models_app import services
from models_app.models import ModelAlias, ModelVersion, RegisteredModel


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_creations_give_versions_one_to_twenty(postgres, owner, team):
    model = services.registered_model_create(actor=owner, name="churn", team=team)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            services.model_version_create(actor=owner, model=model)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(ModelVersion.objects.filter(model=model).values_list("version", flat=True))
    assert numbers == list(range(1, 21))
    assert RegisteredModel.objects.get(pk=model.pk).last_version_number == 20


def test_a_failed_creation_gives_its_number_back(owner, internal_model):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.model_version_create(actor=owner, model=internal_model, source="x" * 5000)
    assert services.model_version_create(actor=owner, model=internal_model).version == 1


def test_hand_written_writes_store_dates_as_the_orm_does(owner, internal_model):
    """The version number's UPDATE and a first alias's INSERT are raw SQL: their timestamps are
    stored in the ORM's format, so an exact-date filter (SQLite compares text) finds them."""
    version = services.model_version_create(actor=owner, model=internal_model)
    assert RegisteredModel.objects.filter(pk=internal_model.pk, updated_at=internal_model.updated_at).exists()
    alias = services.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=version)
    assert ModelAlias.objects.filter(pk=alias.pk, updated_at=alias.updated_at).exists()
