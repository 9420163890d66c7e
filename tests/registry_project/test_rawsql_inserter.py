"""``rawsql.Inserter``: hand-written inserts that store exactly what the ORM's ``save()`` stores."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from models_app import services
from models_app.models import AliasHistory, AuditEvent, ModelVersion
from registry_project import rawsql


def _event(owner, **extra) -> AuditEvent:
    return AuditEvent(
        actor=owner,
        actor_username="owner",
        token_id=7,
        client_ip="2001:db8::1",
        request_id="r-1",
        action="test.inserted",
        object_type="ModelVersion",
        object_id="3",
        object_repr="churn v3",
        model_name="churn",
        team_id=1,
        before=None,
        after={"nested": {"list": [1, 2.5, None, True]}, "text": "é ü 🙂", "quote": "it's"},
        **extra,
    )


def test_inserted_rows_equal_what_the_orm_saves(owner):
    saved, inserted = _event(owner), _event(owner)
    saved.save()
    rawsql.inserter(AuditEvent).insert([inserted])

    assert inserted.pk is not None and inserted.pk != saved.pk
    assert not inserted._state.adding
    assert inserted.created_at is not None  # auto_now_add, as save() sets it
    stored = AuditEvent.objects.get(pk=inserted.pk)
    assert stored.created_at == inserted.created_at
    # Every editable column as save() stored it (created_at is checked above).
    assert model_to_dict(stored, exclude=["id"]) == model_to_dict(
        AuditEvent.objects.get(pk=saved.pk), exclude=["id"]
    )
    assert stored.after == inserted.after and stored.before is None


def test_many_rows_are_inserted_in_order_with_their_keys(owner, internal_model):
    rows = [
        AliasHistory(model=internal_model, alias="a", from_version=None, to_version=i, reason=f"r{i}")
        for i in range(rawsql.Inserter.ROWS * 2 + 7)  # three statements
    ]
    rawsql.inserter(AliasHistory).insert(rows)
    keys = [row.pk for row in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(rows)
    stored = dict(AliasHistory.objects.filter(model=internal_model).values_list("pk", "to_version"))
    assert stored == {row.pk: row.to_version for row in rows}


def test_a_violated_constraint_is_djangos_integrity_error(owner, internal_model):
    services.model_version_create(actor=owner, model=internal_model)  # version 1
    duplicate = ModelVersion(model=internal_model, version=1, created_by=owner)
    with pytest.raises(IntegrityError), transaction.atomic():
        rawsql.inserter(ModelVersion).insert([duplicate])
    assert ModelVersion.objects.filter(model=internal_model).count() == 1
