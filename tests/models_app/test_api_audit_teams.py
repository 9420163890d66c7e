"""The audit log API (scoped, filtered, CSV) and team management."""

from __future__ import annotations

import csv
import io

from django.core.management import call_command

from models_app import services
from models_app.models import AuditEvent, TeamMembership


def test_owners_see_their_models_events_and_outsiders_none(
    api, owner, outsider, viewer, internal_model, admin_user
):
    services.model_tag_set(actor=owner, model=internal_model, key="k", value="v")
    mine = api(owner).get("/api/v1/audit/?model=churn").json()["results"]
    assert [e["action"] for e in mine] == ["model.tag_set", "model.created"]
    assert mine[0]["before"] is None and mine[0]["after"] == {"k": "v"}
    assert api(outsider).get("/api/v1/audit/").json()["count"] == 0
    assert api(viewer).get("/api/v1/audit/").json()["count"] == 0
    assert api(admin_user).get("/api/v1/audit/").json()["count"] >= 2


def test_audit_filters_and_csv_export(api, owner, internal_model):
    services.model_tag_set(actor=owner, model=internal_model, key="k", value="=HYPERLINK(1)")
    client = api(owner)
    assert client.get("/api/v1/audit/?action=model.tag_set&actor=owner").json()["count"] == 1
    assert client.get("/api/v1/audit/?since=2100-01-01T00:00:00Z").json()["count"] == 0
    assert client.get("/api/v1/audit/?since=yesterday").status_code == 400
    response = client.get("/api/v1/audit/?format=csv&model=churn")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["action"] for r in rows] == ["model.tag_set", "model.created"]


def test_audit_log_is_append_only(owner, internal_model):
    event = AuditEvent.objects.first()
    for attempt in (lambda: event.save(), lambda: event.delete(), lambda: AuditEvent.objects.all().delete(),
                    lambda: AuditEvent.objects.update(action="x")):  # fmt: skip
        try:
            attempt()
        except TypeError:
            continue
        raise AssertionError("the audit log accepted a change")


def test_admins_manage_teams_and_members(api, admin_user, owner, outsider):
    client = api(admin_user)
    assert client.post("/api/v1/teams/", {"name": "vision"}, format="json").status_code == 201
    assert client.post("/api/v1/teams/", {"name": "VISION"}, format="json").status_code == 409
    response = client.put("/api/v1/teams/vision/members/owner", {"role": "approver"}, format="json")
    assert response.status_code == 200 and response.json()["members"] == [
        {"username": "owner", "role": "approver"}
    ]
    assert (
        client.put("/api/v1/teams/vision/members/owner", {"role": "boss"}, format="json").status_code == 400
    )
    assert (
        client.put("/api/v1/teams/vision/members/nobody", {"role": "viewer"}, format="json").status_code
        == 404
    )
    assert client.delete("/api/v1/teams/vision/members/owner").status_code == 204
    assert not TeamMembership.objects.filter(team__name="vision").exists()
    assert {"team.created", "membership.set", "membership.removed"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_non_admins_cannot_manage_teams(api, owner):
    client = api(owner)
    assert client.post("/api/v1/teams/", {"name": "x"}, format="json").status_code == 403
    assert (
        client.put("/api/v1/teams/risk/members/owner", {"role": "viewer"}, format="json").status_code == 403
    )
    assert [t["name"] for t in client.get("/api/v1/teams/").json()] == ["risk"]


def test_create_user_command(db, capsys, monkeypatch):
    from django.contrib.auth.models import Group, User

    Group.objects.create(name="risk")
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass-123\n"))
    call_command("create_user", "carol", "--password-stdin", "--team", "risk", "--role", "contributor")
    carol = User.objects.get(username="carol")
    assert carol.check_password("s3cret-pass-123")
    assert TeamMembership.objects.get(user=carol).role == "contributor"
    call_command("create_user", "root2", "--admin")
    assert User.objects.get(username="root2").is_superuser
