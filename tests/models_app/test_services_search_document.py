"""The full-text search document of a model (PostgreSQL): computed on insert and when the name,
description or card changes, and left alone by every other write to the model's row (a new
version bumps its counter and ``updated_at``; migration 0011)."""

from __future__ import annotations

from django.db import connection

from models_app import services
from models_app.models import RegisteredModel

CARD = "## Intended use\nPredicts churn from usage events, billing and support tickets.\n" * 60


def _document(model: RegisteredModel) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_document::text FROM models_app_registeredmodel WHERE id = %s", [model.pk]
        )
        return cursor.fetchone()[0]


def _mark(model: RegisteredModel) -> None:
    """Put a sentinel in the document; an UPDATE that names only this column fires no trigger."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE models_app_registeredmodel SET search_document = to_tsvector('simple', 'sentinel') "
            "WHERE id = %s",
            [model.pk],
        )
    assert _document(model) == "'sentinel':1"


def test_a_new_model_gets_its_document(postgres, owner, team):
    model = services.registered_model_create(
        actor=owner, name="churn-model", team=team, description="Customers who cancel"
    )
    document = _document(model)
    assert "'churn':" in document and "'cancel':" in document


def test_new_versions_and_unchanged_saves_leave_the_document_alone(postgres, owner, team):
    model = services.registered_model_create(actor=owner, name="churn-model", team=team, card=CARD)
    _mark(model)
    services.model_version_create(actor=owner, model=model)  # bumps the counter and updated_at
    services.model_version_create(actor=owner, model=model)
    RegisteredModel.objects.get(pk=model.pk).save()  # every column written, none changed
    assert _document(model) == "'sentinel':1"
    assert RegisteredModel.objects.get(pk=model.pk).last_version_number == 2


def test_a_changed_name_description_or_card_recomputes_the_document(postgres, owner, team):
    model = services.registered_model_create(actor=owner, name="churn-model", team=team)
    for change, word in (
        ({"description": "Forecasts demand"}, "'forecast':"),
        ({"card": "Trained on invoices"}, "'invoic':"),
        ({"name": "renamed-model"}, "'renam':"),
    ):
        _mark(model)
        model = services.registered_model_update(actor=owner, model=model, **change)
        assert word in _document(model), change
