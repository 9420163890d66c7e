"""/api/v1/models/: register, list, filter, read, change and delete models."""

from __future__ import annotations

import json

import pytest

from models_app import services
from models_app.models import AuditEvent, RegisteredModel


def test_it_registers_a_model_in_the_owners_team(api, owner, team):
    response = api(owner).post(
        "/api/v1/models/",
        {"name": "churn", "description": "Predicts churn.", "tags": {"task": "classification"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "churn"
    assert body["team"] == "risk"  # the only team the owner contributes to
    assert body["visibility"] == "internal"
    assert body["tags"] == {"task": "classification"}
    assert body["created_by"] == "owner"
    assert body["latest_version"] == 0
    assert AuditEvent.objects.filter(action="model.created", model_name="churn").exists()


def test_names_are_unique_regardless_of_case(api, owner, internal_model):
    response = api(owner).post("/api/v1/models/", {"name": "CHURN", "team": "risk"}, format="json")
    assert response.status_code == 409
    assert response.json()["fields"] == {"name": [response.json()["message"]]}
    assert RegisteredModel.objects.count() == 1


def test_it_is_found_by_name_in_any_case(api, viewer, internal_model):
    response = api(viewer).get("/api/v1/models/ChUrN/")
    assert response.status_code == 200
    assert response.json()["name"] == "churn"


def test_a_user_in_several_teams_must_name_the_team(api, owner, other_team):
    from models_app.models import TeamMembership

    TeamMembership.objects.create(team=other_team, user=owner, role="contributor")
    response = api(owner).post("/api/v1/models/", {"name": "x"}, format="json")
    assert response.status_code == 400
    assert "team" in response.json()["fields"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "a" * 129}, "name"),
        ({"name": ""}, "name"),
        ({"name": "bad name"}, "name"),
        ({"name": "bad/name"}, "name"),
        ({"name": "..", "team": "risk"}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "visibility": "public"}, "visibility"),
        ({"name": 123}, "name"),
        ({"name": "ok", "tags": ["not", "a", "dict"]}, "tags"),
        ({"name": "ok", "tags": {"bad\nkey": "v"}}, "tags"),
        ({"name": "ok", "tags": {"k": "v" * 5001}}, "tags"),
        ({"name": "ok", "team": "no-such-team"}, "team"),
        ({"name": "ok", "description": ["x"]}, "description"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(api, owner, team, payload, field):
    response = api(owner).post("/api/v1/models/", payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    assert field in body["fields"]
    assert field in body["message"]
    assert RegisteredModel.objects.count() == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"null"])
def test_malformed_json_is_a_400(api, owner, team, raw):
    response = api(owner).generic("POST", "/api/v1/models/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] in ("parse_error", "invalid")
    assert RegisteredModel.objects.count() == 0


def test_list_is_filtered_searched_ordered_and_paginated(api, owner, viewer, team):
    for i, (name, tag) in enumerate([("churn", "tabular"), ("fraud", "tabular"), ("vision", "images")]):
        services.registered_model_create(
            actor=owner, name=name, team=team, description=f"model number {i}", tags={"modality": tag}
        )
    client = api(viewer)
    names = lambda r: [m["name"] for m in r.json()["results"]]  # noqa: E731
    assert names(client.get("/api/v1/models/?tag=modality=tabular")) == ["churn", "fraud"]
    assert names(client.get("/api/v1/models/?tag=modality")) == ["churn", "fraud", "vision"]
    assert names(client.get("/api/v1/models/?q=images")) == ["vision"]
    assert names(client.get("/api/v1/models/?q=number 1")) == ["fraud"]
    assert names(client.get("/api/v1/models/?team=risk&ordering=-name")) == ["vision", "fraud", "churn"]
    assert names(client.get("/api/v1/models/?created_by=owner&name=ur")) == ["churn"]
    page = client.get("/api/v1/models/?page_size=2&ordering=name").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert client.get("/api/v1/models/?updated_since=not-a-date").status_code == 400
    assert client.get("/api/v1/models/?updated_since=2000-01-01T00:00:00Z").json()["count"] == 3


def test_patch_changes_description_and_renames(api, owner, internal_model):
    client = api(owner)
    response = client.patch(
        "/api/v1/models/churn/", {"description": "new", "name": "churn-v2"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "new"
    assert client.get("/api/v1/models/churn-v2/").status_code == 200
    assert client.get("/api/v1/models/churn/").status_code == 404
    event = AuditEvent.objects.get(action="model.updated")
    assert event.before["description"] == "Predicts customer churn." and event.after["name"] == "churn-v2"


def test_patch_rejects_read_only_and_unknown_fields(api, owner, internal_model):
    response = api(owner).patch("/api/v1/models/churn/", {"created_by": "someone"}, format="json")
    assert response.status_code == 400
    assert "created_by" in response.json()["fields"]


def test_moving_a_model_to_a_team_you_do_not_contribute_to_is_forbidden(
    api, owner, internal_model, other_team
):
    response = api(owner).patch("/api/v1/models/churn/", {"team": "marketing"}, format="json")
    assert response.status_code == 403
    internal_model.refresh_from_db()
    assert internal_model.team.name == "risk"


def test_delete_removes_the_model_and_its_versions(api, owner, internal_model):
    services.model_version_create(actor=owner, model=internal_model)
    response = api(owner).delete("/api/v1/models/churn/")
    assert response.status_code == 204
    assert not RegisteredModel.objects.exists()
    assert AuditEvent.objects.filter(action="model.deleted", model_name="churn").exists()


def test_json_errors_for_unknown_api_paths(api, viewer):
    response = api(viewer).get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert json.loads(response.content)["error"] == "not_found"
