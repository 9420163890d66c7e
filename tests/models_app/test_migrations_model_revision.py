"""``ModelRevision`` (migrations 0013 and lineage 0003): every change to what the MLflow API
renders for a model gives it a new revision when the change commits, whatever wrote it; a
rolled-back change gives none; the bump at commit takes no lock that writers hold.
PostgreSQL only: elsewhere there are no triggers (and no copies to invalidate)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from lineage_app.models import TrainingRun
from models_app import services
from models_app.models import (
    ModelAlias,
    ModelRevision,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    VersionTag,
)
from tests.concurrency import held_transaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model(postgres, owner, team):
    model = services.registered_model_create(actor=owner, name="churn", team=team, tags={"task": "cls"})
    v1 = services.model_version_create(actor=owner, model=model, tags={"flavor": "sklearn"})
    services.model_version_create(actor=owner, model=model)
    ModelAlias.objects.create(model=model, alias="champion", version=v1)
    TrainingRun.objects.create(version=v1, external_id="a" * 32)
    return model


def revision(model) -> int:
    return ModelRevision.objects.get(model_id=model.pk).revision


def v(model, number: int) -> ModelVersion:
    return ModelVersion.objects.get(model=model, version=number)


CHANGES = {
    "model renamed": lambda m: RegisteredModel.objects.filter(pk=m.pk).update(name="churn2"),
    "model described": lambda m: RegisteredModel.objects.filter(pk=m.pk).update(description="new"),
    "version added": lambda m: ModelVersion.objects.create(model=m, version=3),
    "version changed": lambda m: ModelVersion.objects.filter(pk=v(m, 2).pk).update(stage="staging"),
    "version deleted": lambda m: v(m, 2).delete(),
    "model tag added": lambda m: ModelTag.objects.create(model=m, key="k", value="v"),
    "model tag changed": lambda m: ModelTag.objects.filter(model=m).update(value="other"),
    "model tag deleted": lambda m: ModelTag.objects.filter(model=m).delete(),
    "version tag added": lambda m: VersionTag.objects.create(version=v(m, 2), key="k", value="v"),
    "version tag changed": lambda m: VersionTag.objects.filter(version__model=m).update(value="x"),
    "version tag deleted": lambda m: VersionTag.objects.filter(version__model=m).delete(),
    "alias added": lambda m: ModelAlias.objects.create(model=m, alias="canary", version=v(m, 2)),
    "alias moved": lambda m: ModelAlias.objects.filter(model=m).update(version=v(m, 2)),
    "alias deleted": lambda m: ModelAlias.objects.filter(model=m).delete(),
    "run linked": lambda m: TrainingRun.objects.create(version=v(m, 2), external_id="b" * 32),
    "run id changed": lambda m: TrainingRun.objects.filter(version__model=m).update(external_id="c" * 32),
    "run unlinked": lambda m: TrainingRun.objects.filter(version__model=m).delete(),
    "creator renamed": lambda m: User.objects.filter(username="owner").update(username="owner2"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_change_gives_a_new_revision_at_commit(model, change):
    before = revision(model)
    with transaction.atomic():
        CHANGES[change](model)
        # Bumps are deferred to the commit: not in the changing transaction itself.
        assert revision(model) == before
    assert revision(model) != before


def test_changes_that_render_nothing_keep_the_revision(model):
    before = revision(model)
    TrainingRun.objects.filter(version__model=model).update(status="FINISHED", params={"lr": "0.1"})
    User.objects.filter(username="owner").update(email="owner@example.com")
    assert revision(model) == before


def test_other_models_keep_theirs(model, owner, team):
    other = services.registered_model_create(actor=owner, name="fraud", team=team)
    before = revision(other)
    ModelTag.objects.create(model=model, key="k", value="v")
    assert revision(other) == before


def test_a_rolled_back_change_gives_none(model):
    before = revision(model)
    with pytest.raises(RuntimeError), transaction.atomic():
        ModelTag.objects.create(model=model, key="k", value="v")
        raise RuntimeError("rolled back")
    assert revision(model) == before


def test_revisions_are_never_reused(model, owner, team):
    """A deleted model's row goes; a new model never gets a number seen before."""
    seen = {revision(model)}
    pk = model.pk
    services.registered_model_delete(actor=owner, model=RegisteredModel.objects.get(pk=pk))
    assert not ModelRevision.objects.filter(model_id=pk).exists()
    again = services.registered_model_create(actor=owner, name="churn", team=team)
    assert revision(again) not in seen


def test_truncate_empties_the_table(model):
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE models_app_registeredmodel CASCADE")
    assert not ModelRevision.objects.exists()


def test_the_bump_at_commit_does_not_wait_for_the_model_lock(model):
    """A writer that locks the model and then a version (a stage transition) and one that
    changes the version first (an update) must not deadlock: the commit's bump touches only the
    revision row. If it took the model's row lock, this commit would wait for the held lock."""
    version = v(model, 2)
    with held_transaction(lambda: RegisteredModel.objects.select_for_update().get(pk=model.pk)):
        before = revision(model)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            ModelVersion.objects.filter(pk=version.pk).update(description="changed")
        assert revision(model) != before


def test_a_transaction_bumps_a_model_once(model):
    """Create version writes the version, its tags, its run and the model's counter: one bump."""

    def last_drawn() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM models_app_modelrevision_seq")
            return cursor.fetchone()[0]

    before, drawn = revision(model), last_drawn()
    with transaction.atomic():
        version = ModelVersion.objects.create(model=model, version=3)
        VersionTag.objects.create(version=version, key="a", value="1")
        VersionTag.objects.create(version=version, key="b", value="2")
        TrainingRun.objects.create(version=version, external_id="d" * 32)
        RegisteredModel.objects.filter(pk=model.pk).update(last_version_number=3)
    assert last_drawn() == drawn + 1
    assert revision(model) == drawn + 1 != before


def test_the_copies_check_for_exactly_these_triggers(postgres):
    """``rendered.TRIGGERS`` (checked before any copy is kept) names every revision trigger."""
    from models_app.mlflow import rendered

    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%%revision%%' AND NOT tgisinternal")
        names = {row[0] for row in cursor.fetchall()}
    assert names - {"registeredmodel_revision_truncate"} == set(rendered.TRIGGERS)
