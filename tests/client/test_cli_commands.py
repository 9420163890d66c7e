"""The other commands as a subprocess: errors, login, listing, governance and the lineage questions."""

from __future__ import annotations

import json
import socket
import stat

from models_app import services
from models_app.models import ModelVersion, Promotion
from tests.client.conftest import write_tree


def one_line(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_bad_token_is_one_clear_line(registry, folder_store, api):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer myd_not-a-real-token")
    server_message = client.get("/api/v1/models/").json()["message"]

    for args in (["ls"], ["pull", "churn:1", "-o", registry.tmp_path / "o"], ["show", "churn"]):
        result = registry.cli(*args, env=registry.env(MODELYARD_TOKEN="myd_not-a-real-token"))
        line = one_line(result)
        assert server_message in line and "HTTP 401" in line
        assert "myd_not-a-real-token" not in line


def test_an_unreachable_registry_is_one_clear_line(registry):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    env = registry.env(MODELYARD_URL=f"http://127.0.0.1:{port}", MODELYARD_RETRIES="1")
    line = one_line(registry.cli("ls", env=env))
    assert f"Cannot reach the registry at http://127.0.0.1:{port}" in line
    assert one_line(registry.cli("ls", env={**env, "MODELYARD_URL": ""})).endswith(
        "No registry URL: set MODELYARD_URL or run `modelyard login`."
    )


def test_login_verifies_and_stores_the_token_privately(registry, folder_store):
    env = registry.env()
    del env["MODELYARD_TOKEN"]
    config = registry.tmp_path / "config" / "modelyard" / "config.toml"

    bad = registry.cli("login", "--url", registry.url, "--token-stdin", env=env, stdin="myd_wrong\n")
    assert "HTTP 401" in one_line(bad)
    assert not config.exists()

    good = registry.cli("login", "--url", registry.url, "--token-stdin", env=env, stdin=registry.token + "\n")
    assert good.returncode == 0, good.stderr
    assert registry.token not in good.stdout + good.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert registry.token in config.read_text()

    del env["MODELYARD_URL"]  # both now come from the file
    listed = registry.cli("ls", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_listing_promotion_and_lineage_commands(registry, folder_store, tmp_path, approver, team):
    with registry.client() as client:
        for i, auc in enumerate((0.80, 0.86)):
            (tmp_path / f"m{i}.json").write_text(json.dumps({"auc": auc}))
            client.push(
                write_tree(tmp_path / f"m{i}", {"model.bin": b"weights %d" % i}),
                model="churn",
                metrics={"auc": auc},
                description="Predicts churn",
            )
    churn = ModelVersion.objects.get(model__name="churn", version=1).model
    churn.description = "Predicts customer churn."
    churn.save()

    ls = registry.cli("ls")
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.splitlines()[0].split() == ["NAME", "TEAM", "LATEST", "ALIASES", "DESCRIPTION"]
    assert ls.stdout.splitlines()[1].split()[:3] == ["churn", "risk", "2"]
    found = registry.cli("search", "customer", "--json")
    assert [m["name"] for m in json.loads(found.stdout)] == ["churn"]
    assert json.loads(registry.cli("search", "nothing-like-it", "--json").stdout) == []

    shown = json.loads(registry.cli("show", "churn:2", "--json").stdout)
    assert (shown["version"], shown["status"], [f["path"] for f in shown["files"]]) == (
        2,
        "READY",
        ["model.bin"],
    )
    assert [v["version"] for v in json.loads(registry.cli("show", "churn", "--json").stdout)["versions"]] == [
        2,
        1,
    ]

    lineage = json.loads(registry.cli("lineage", "churn:2", "--json").stdout)
    assert lineage["run"]["metrics"] == {"auc": 0.86}
    human = registry.cli("lineage", "churn:2")
    assert "metrics: auc=0.86" in human.stdout and "environment: Python" in human.stdout

    exposure = json.loads(registry.cli("exposure", "httpx", ">=0.1", "--json").stdout)
    assert sorted(v["version"] for v in exposure["versions"]) == [1, 2]
    assert json.loads(registry.cli("exposure", "httpx", "<0.1", "--json").stdout)["count"] == 0
    assert "specifier" in one_line(registry.cli("exposure", "httpx", "not a specifier"))

    compared = json.loads(registry.cli("compare", "churn:1", "churn:2", "--json").stdout)
    assert any("auc" in line for line in compared["summary"]), compared["summary"]

    # Governance: production needs one approval from someone else; no checks required here.
    with registry.client() as client:
        client.request(
            "PATCH", "models/churn/policy", json={"required_checks": {}, "production_approvals": 1}
        )
    promoted = registry.cli("promote", "churn:2", "--to", "production", "--comment", "better auc", "--json")
    assert promoted.returncode == 0, promoted.stderr
    promotion = json.loads(promoted.stdout)
    assert promotion["state"] == "pending"
    self_approval = registry.cli("approve", promotion["id"])
    assert "HTTP 403" in one_line(self_approval)

    _t, approver_token = services.access_token_create(
        actor=approver, user=approver, name="cli", scopes=["read", "write"]
    )
    approved = registry.cli(
        "approve", promotion["id"], "--comment", "ok", env=registry.env(MODELYARD_TOKEN=approver_token)
    )
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"promotion {promotion['id']}: applied"
    assert Promotion.objects.get(pk=promotion["id"]).state == "applied"
    assert ModelVersion.objects.get(model__name="churn", version=2).stage == "production"


def test_push_names_the_team_when_you_are_in_several(registry, folder_store, tmp_path, owner, other_team):
    from models_app.choices import TeamRole
    from models_app.models import TeamMembership

    TeamMembership.objects.create(team=other_team, user=owner, role=TeamRole.CONTRIBUTOR)
    model = write_tree(tmp_path / "m", {"model.bin": b"w"})
    line = one_line(registry.cli("push", model, "--model", "campaign", "--no-lineage"))
    assert "you contribute to more than one" in line and "--team TEAM" in line
    assert not ModelVersion.objects.filter(model__name="campaign").exists()

    pushed = registry.cli(
        "push", model, "--model", "campaign", "--team", "marketing", "--no-lineage", "--json"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert ModelVersion.objects.get(model__name="campaign", version=1).model.team.name == "marketing"
