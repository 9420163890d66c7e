"""Tags on models and versions; aliases pointing at versions."""

from __future__ import annotations

import pytest

from models_app import services
from models_app.models import AuditEvent, ModelAlias, ModelTag


def test_model_tags_are_set_replaced_shown_inline_and_deleted(api, owner, internal_model):
    client = api(owner)
    assert client.put("/api/v1/models/churn/tags/owner", {"value": "ops"}, format="json").json() == {
        "key": "owner",
        "value": "ops",
    }
    client.put("/api/v1/models/churn/tags/owner", {"value": "risk-ops"}, format="json")
    assert client.get("/api/v1/models/churn/").json()["tags"] == {
        "owner": "risk-ops",
        "task": "classification",
    }
    assert client.delete("/api/v1/models/churn/tags/owner").status_code == 204
    assert client.delete("/api/v1/models/churn/tags/owner").status_code == 404
    assert list(ModelTag.objects.values_list("key", flat=True)) == ["task"]


def test_tag_keys_with_dots_and_slashes_work(api, owner, internal_model):
    client = api(owner)
    response = client.put("/api/v1/models/churn/tags/mlflow.source/git", {"value": "x"}, format="json")
    assert response.status_code == 200
    assert client.get("/api/v1/models/churn/").json()["tags"]["mlflow.source/git"] == "x"


@pytest.mark.parametrize(
    ("body", "field"), [({"value": "x" * 5001}, "value"), ({}, "value"), ({"value": "x", "y": 1}, "y")]
)
def test_bad_tag_values_are_400(api, owner, internal_model, body, field):
    response = api(owner).put("/api/v1/models/churn/tags/k", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_overlong_tag_key_is_400(api, owner, internal_model):
    response = api(owner).put(f"/api/v1/models/churn/tags/{'k' * 251}", {"value": "v"}, format="json")
    assert response.status_code == 400
    assert "key" in response.json()["fields"]


@pytest.fixture
def two_versions(owner, internal_model):
    return [services.model_version_create(actor=owner, model=internal_model) for _ in range(2)]


def test_alias_points_at_a_version_and_moves(api, owner, internal_model, two_versions):
    client = api(owner)
    response = client.put("/api/v1/models/churn/aliases/candidate", {"version": 1}, format="json")
    assert response.status_code == 200
    assert response.json()["version"] == 1
    got = client.get("/api/v1/models/churn/aliases/candidate").json()
    assert got["version"] == 1 and got["aliases"] == ["candidate"]
    client.put("/api/v1/models/churn/aliases/candidate", {"version": 2}, format="json")
    assert client.get("/api/v1/models/churn/aliases/candidate").json()["version"] == 2
    assert client.get("/api/v1/models/churn/aliases/").json() == [
        {
            "alias": "candidate",
            "version": 2,
            "updated_by": "owner",
            "updated_at": ModelAlias.objects.get().updated_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert client.get("/api/v1/models/churn/").json()["aliases"] == {"candidate": 2}
    moved = AuditEvent.objects.filter(action="alias.set").order_by("id").last()
    assert (moved.before, moved.after) == (
        {"alias": "candidate", "version": 1},
        {"alias": "candidate", "version": 2},
    )
    assert client.delete("/api/v1/models/churn/aliases/candidate").status_code == 204
    assert client.get("/api/v1/models/churn/aliases/candidate").status_code == 404


@pytest.mark.parametrize("alias", ["latest", "LATEST", "3", "v3", "V12", "-x", "a b"])
def test_reserved_or_malformed_alias_names_are_refused(api, owner, internal_model, two_versions, alias):
    response = api(owner).put(f"/api/v1/models/churn/aliases/{alias}", {"version": 1}, format="json")
    assert response.status_code == 400, response.content
    assert "alias" in response.json()["fields"]
    assert not ModelAlias.objects.exists()


def test_alias_to_a_missing_version_is_400(api, owner, internal_model, two_versions):
    response = api(owner).put("/api/v1/models/churn/aliases/candidate", {"version": 9}, format="json")
    assert response.status_code == 400
    assert "version" in response.json()["fields"]


def test_alias_cannot_point_into_another_model(owner, team, internal_model, two_versions):
    from django.core.exceptions import ValidationError

    other = services.registered_model_create(actor=owner, name="other", team=team)
    with pytest.raises(ValidationError):
        services.model_alias_set(actor=owner, model=other, alias="candidate", version=two_versions[0])


@pytest.mark.django_db(transaction=True)
def test_two_first_uses_of_an_alias_at_once_both_succeed_and_the_last_wins(
    postgres, owner, internal_model, two_versions
):
    """Neither request sees an alias row to lock; the second insert waits on the unique index
    for the first's commit, then moves the row the first created, as if the two had come one
    after the other (MLflow's answer too: no error for a benign race, not a 500 or a 409)."""
    import threading

    from models_app.models import AliasHistory
    from tests.concurrency import held_transaction

    first, second = two_versions

    def set_first() -> None:
        services.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=first)

    with held_transaction(set_first) as release:
        threading.Timer(0.5, release.set).start()  # the first commits while the second waits
        services.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=second)
    assert list(ModelAlias.objects.values_list("alias", "version__version")) == [("candidate", 2)]
    moves = AliasHistory.objects.filter(alias="candidate").order_by("id")
    assert [(m.from_version, m.to_version) for m in moves] == [(None, 1), (1, 2)]
    events = AuditEvent.objects.filter(action="alias.set").order_by("id")
    assert [(e.before, e.after) for e in events] == [
        (None, {"alias": "candidate", "version": 1}),
        ({"alias": "candidate", "version": 1}, {"alias": "candidate", "version": 2}),
    ]
