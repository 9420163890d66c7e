"""/api/v1/models/{name}/versions/: numbered versions and their immutability."""

from __future__ import annotations

from models_app import services
from models_app.choices import VersionStatus
from models_app.models import AuditEvent, ModelVersion


def test_versions_are_numbered_from_one(api, owner, internal_model):
    client = api(owner)
    numbers = [
        client.post("/api/v1/models/churn/versions/", {"description": f"v{i}"}, format="json").json()[
            "version"
        ]
        for i in range(3)
    ]
    assert numbers == [1, 2, 3]
    listed = client.get("/api/v1/models/churn/versions/").json()["results"]
    assert [v["version"] for v in listed] == [3, 2, 1]
    assert listed[0]["status"] == "PENDING"
    assert client.get("/api/v1/models/churn/").json()["latest_version"] == 3


def test_numbers_are_never_reused_after_a_delete(api, owner, internal_model):
    client = api(owner)
    client.post("/api/v1/models/churn/versions/", {}, format="json")
    client.post("/api/v1/models/churn/versions/", {}, format="json")
    assert client.delete("/api/v1/models/churn/versions/2/").status_code == 204
    assert client.post("/api/v1/models/churn/versions/", {}, format="json").json()["version"] == 3


def test_a_ready_version_keeps_its_source_but_takes_a_new_description(api, owner, internal_model):
    version = services.model_version_create(actor=owner, model=internal_model, source="s3://a/b")
    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.READY)
    client = api(owner)
    response = client.patch("/api/v1/models/churn/versions/1/", {"source": "s3://elsewhere"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "version_frozen"
    response = client.patch(
        "/api/v1/models/churn/versions/1/", {"description": "better words"}, format="json"
    )
    assert response.status_code == 200
    version.refresh_from_db()
    assert (version.source, version.description) == ("s3://a/b", "better words")


def test_status_and_number_cannot_be_set_by_clients(api, owner, internal_model):
    response = api(owner).post(
        "/api/v1/models/churn/versions/", {"status": "READY", "version": 9}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"status", "version"}
    assert not ModelVersion.objects.exists()


def test_unknown_version_is_404(api, viewer, internal_model):
    assert api(viewer).get("/api/v1/models/churn/versions/7/").status_code == 404


def test_filters_by_status_and_tag(api, owner, internal_model):
    v1 = services.model_version_create(actor=owner, model=internal_model, tags={"dataset": "2026-10"})
    services.model_version_create(actor=owner, model=internal_model, tags={"dataset": "2026-11"})
    ModelVersion.objects.filter(pk=v1.pk).update(status=VersionStatus.READY)
    client = api(owner)
    assert [
        v["version"] for v in client.get("/api/v1/models/churn/versions/?status=READY").json()["results"]
    ] == [1]
    got = client.get("/api/v1/models/churn/versions/?tag=dataset=2026-11").json()["results"]
    assert [v["version"] for v in got] == [2]


def test_each_version_mutation_is_audited(api, owner, internal_model):
    client = api(owner)
    client.post("/api/v1/models/churn/versions/", {}, format="json")
    client.patch("/api/v1/models/churn/versions/1/", {"description": "d"}, format="json")
    client.put("/api/v1/models/churn/versions/1/tags/k", {"value": "v"}, format="json")
    client.delete("/api/v1/models/churn/versions/1/tags/k")
    client.delete("/api/v1/models/churn/versions/1/")
    actions = list(
        AuditEvent.objects.filter(model_name="churn").order_by("id").values_list("action", flat=True)
    )
    assert actions == [
        "model.created",
        "version.created",
        "version.updated",
        "version.tag_set",
        "version.tag_deleted",
        "version.deleted",
    ]
    event = AuditEvent.objects.get(action="version.created")
    assert event.actor_username == "owner" and event.token_id is not None and event.client_ip == "127.0.0.1"
