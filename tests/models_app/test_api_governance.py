"""Stages, checks, promotions with approval, protected aliases and their history."""

from __future__ import annotations

import io
import threading

import pytest
from django.db import connection

from models_app import services, services_governance
from models_app.choices import Stage
from models_app.models import AliasHistory, AuditEvent, CheckResult, ModelVersion, Promotion

V = "/api/v1/models/churn/versions"


def ready_version(owner, model, *, checks=("loadable", "security_scan")) -> ModelVersion:
    version = services.model_version_create(actor=owner, model=model)
    services.version_file_upload(actor=owner, version=version, path="m.bin", stream=io.BytesIO(b"w"), size=1)
    services.model_version_finalize(actor=owner, version=version)
    for name in checks:
        services_governance.check_report(
            actor=None, version=version, name=name, status="passed", builtin=True
        )
    version.refresh_from_db()
    return version


def test_checks_are_idempotent_per_name_with_history(api, owner, internal_model):
    ready_version(owner, internal_model, checks=())
    client = api(owner)
    body = {"name": "integration", "status": "running", "summary": "started"}
    assert client.post(f"{V}/1/checks", body, format="json").status_code == 201
    body.update(status="passed", summary="42 tests", metrics={"tests": 42})
    response = client.post(f"{V}/1/checks", body, format="json")
    assert response.status_code == 201 and response.json()["status"] == "passed"
    assert [c["name"] for c in client.get(f"{V}/1/checks").json()] == ["integration"]
    assert list(CheckResult.objects.order_by("id").values_list("status", flat=True)) == ["running", "passed"]
    assert AuditEvent.objects.filter(action="check.reported").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "status": "great"}, "status"),
        ({"name": "bad name!", "status": "passed"}, "name"),
        ({"name": "x", "status": "passed", "details_url": "not a url"}, "details_url"),
        ({"name": "x", "status": "passed", "metrics": [1]}, "metrics"),
    ],
)
def test_bad_check_reports_are_400(api, owner, internal_model, body, field):
    ready_version(owner, internal_model, checks=())
    response = api(owner).post(f"{V}/1/checks", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_builtin_checks_cannot_be_faked_by_clients(api, owner, internal_model):
    ready_version(owner, internal_model)
    response = api(owner).post(f"{V}/1/checks", {"name": "security_scan", "status": "passed"}, format="json")
    assert response.status_code == 403


def test_staging_is_applied_at_once_when_checks_pass(api, owner, internal_model):
    ready_version(owner, internal_model)
    response = api(owner).post(f"{V}/1/promotions", {"target_stage": "staging"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["state"] == "applied"
    assert ModelVersion.objects.get().stage == Stage.STAGING
    assert AuditEvent.objects.filter(action="version.stage_changed").count() == 1


def test_promotion_with_a_failing_check_is_409_naming_it(api, owner, internal_model):
    version = ready_version(owner, internal_model)
    services_governance.check_report(
        actor=owner, version=version, name="data-drift", status="failed", summary="PSI 0.4"
    )
    response = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json")
    assert response.status_code == 409
    assert "data-drift" in response.json()["message"] and "PSI 0.4" in response.json()["message"]
    assert not Promotion.objects.exists()


def test_a_check_that_never_ran_blocks_too(api, owner, internal_model):
    ready_version(owner, internal_model, checks=("loadable",))
    response = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json")
    assert response.status_code == 409 and "security_scan" in response.json()["message"]


def test_production_needs_an_approval_and_four_eyes(api, owner, approver, internal_model):
    ready_version(owner, internal_model)
    promotion = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()
    assert promotion["state"] == "pending"
    assert ModelVersion.objects.get().stage == Stage.NONE
    queue = api(approver).get("/api/v1/promotions/?state=pending").json()
    assert [p["id"] for p in queue["results"]] == [promotion["id"]]
    response = api(approver).post(
        f"/api/v1/promotions/{promotion['id']}/approve", {"comment": "ok"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "applied" and response.json()["approvals"][0]["approver"] == "approver"
    assert ModelVersion.objects.get().stage == Stage.PRODUCTION


def test_requester_cannot_approve_own_request(api, owner, internal_model, other_team):
    from models_app.models import TeamMembership

    TeamMembership.objects.create(team=other_team, user=owner, role="approver")  # approver elsewhere
    ready_version(owner, internal_model)
    promotion = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()
    response = api(owner).post(f"/api/v1/promotions/{promotion['id']}/approve", {}, format="json")
    assert response.status_code == 403 and "Four eyes" in response.json()["message"]
    assert Promotion.objects.get().state == "pending"


def test_viewers_cannot_approve(api, owner, viewer, internal_model):
    ready_version(owner, internal_model)
    promotion = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()
    assert (
        api(viewer).post(f"/api/v1/promotions/{promotion['id']}/approve", {}, format="json").status_code
        == 403
    )


def test_new_production_archives_the_previous_one(api, owner, approver, internal_model):
    for _ in range(2):
        ready_version(owner, internal_model)
    for number in (1, 2):
        p = api(owner).post(f"{V}/{number}/promotions", {"target_stage": "production"}, format="json").json()
        api(approver).post(f"/api/v1/promotions/{p['id']}/approve", {}, format="json")
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}


def test_approval_with_a_check_now_failing_is_409_stale(api, owner, approver, internal_model):
    version = ready_version(owner, internal_model)
    promotion = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()
    services_governance.check_report(
        actor=None, version=version, name="loadable", status="failed", builtin=True, summary="predict raised"
    )
    response = api(approver).post(f"/api/v1/promotions/{promotion['id']}/approve", {}, format="json")
    assert response.status_code == 409 and "loadable" in response.json()["message"]
    assert ModelVersion.objects.get().stage == Stage.NONE


def test_reject_needs_a_comment_and_cancel_is_the_requesters(api, owner, approver, viewer, internal_model):
    ready_version(owner, internal_model)
    client = api(owner)
    pid = client.post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()["id"]
    assert api(approver).post(f"/api/v1/promotions/{pid}/reject", {}, format="json").status_code == 400
    assert api(viewer).post(f"/api/v1/promotions/{pid}/cancel", {}, format="json").status_code == 403
    assert client.post(f"/api/v1/promotions/{pid}/cancel", {}, format="json").json()["state"] == "cancelled"
    pid = client.post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()["id"]
    rejected = api(approver).post(
        f"/api/v1/promotions/{pid}/reject", {"comment": "AUC too low"}, format="json"
    )
    assert rejected.json()["state"] == "rejected" and rejected.json()["decision_comment"] == "AUC too low"
    assert api(approver).post(f"/api/v1/promotions/{pid}/approve", {}, format="json").status_code == 409


def test_failed_security_scan_blocks_production_unless_an_admin_overrides(
    api, owner, admin_user, internal_model
):
    version = ready_version(owner, internal_model, checks=("loadable",))
    services_governance.check_report(
        actor=None,
        version=version,
        name="security_scan",
        status="failed",
        summary="os.system in model.pkl",
        builtin=True,
    )
    assert api(owner).post(f"{V}/1/promotions", {"target_stage": "staging"}, format="json").status_code == 201
    response = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json")
    assert response.status_code == 409 and "security_scan" in response.json()["message"]
    response = api(owner).post(
        f"{V}/1/promotions", {"target_stage": "production", "override_reason": "x"}, format="json"
    )
    assert response.status_code == 403
    response = api(admin_user).post(
        f"{V}/1/promotions",
        {"target_stage": "production", "override_reason": "vetted by security team"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert AuditEvent.objects.filter(action="promotion.security_override").get().after == {
        "reason": "vetted by security team"
    }


def test_protected_alias_moves_only_through_promotion_or_admin(
    api, owner, approver, admin_user, internal_model
):
    ready_version(owner, internal_model)
    response = api(owner).put("/api/v1/models/churn/aliases/champion", {"version": 1}, format="json")
    assert response.status_code == 403 and "protected" in response.json()["message"]
    p = api(owner).post(
        f"{V}/1/promotions", {"target_stage": "production", "alias": "champion"}, format="json"
    )
    api(approver).post(f"/api/v1/promotions/{p.json()['id']}/approve", {}, format="json")
    assert api(owner).get("/api/v1/models/churn/aliases/champion").json()["version"] == 1
    assert api(admin_user).delete("/api/v1/models/churn/aliases/champion").status_code == 204
    history = api(owner).get("/api/v1/models/churn/alias-history/?alias=champion").json()["results"]
    assert [(h["from_version"], h["to_version"], h["actor"]) for h in history] == [
        (1, None, "admin"),
        (None, 1, "approver"),
    ]
    assert history[1]["promotion"] == p.json()["id"]
    assert AliasHistory.objects.count() == 2


def test_policy_is_editable_by_owners_only(api, owner, viewer, internal_model):
    assert api(viewer).get("/api/v1/models/churn/policy").json()["production_approvals"] == 1
    assert (
        api(viewer)
        .patch("/api/v1/models/churn/policy", {"production_approvals": 2}, format="json")
        .status_code
        == 403
    )
    response = api(owner).patch(
        "/api/v1/models/churn/policy",
        {"production_approvals": 0, "required_checks": {"production": []}},
        format="json",
    )
    assert response.status_code == 200 and response.json()["production_approvals"] == 0
    ready_version(owner, internal_model, checks=())
    promotion = api(owner).post(f"{V}/1/promotions", {"target_stage": "production"}, format="json").json()
    assert promotion["state"] == "applied"
    assert AuditEvent.objects.filter(action="policy.updated").exists()
    bad = api(owner).patch("/api/v1/models/churn/policy", {"required_checks": {"moon": ["x"]}}, format="json")
    assert bad.status_code == 400 and "required_checks" in bad.json()["fields"]


def test_reading_a_policy_never_stores_one(api, owner, internal_model, settings):
    """Until an owner changes it, a model follows MODELYARD_POLICY_DEFAULTS: reads (the API,
    the model page, an alias move that checks protected aliases) write no row."""
    from models_app.models import PromotionPolicy

    ready_version(owner, internal_model, checks=())
    client = api(owner)
    assert client.get("/api/v1/models/churn/policy").json()["updated_at"] is None
    moved = client.put("/api/v1/models/churn/aliases/candidate", {"version": 1}, format="json")
    assert moved.status_code == 200, moved.content
    client.force_login(owner)
    assert client.get("/models/churn/").status_code == 200
    assert not PromotionPolicy.objects.exists()
    settings.MODELYARD_POLICY_DEFAULTS = {**settings.MODELYARD_POLICY_DEFAULTS, "protected_aliases": ["gold"]}
    assert client.get("/api/v1/models/churn/policy").json()["protected_aliases"] == ["gold"]
    changed = client.patch("/api/v1/models/churn/policy", {"staging_approvals": 1}, format="json").json()
    assert changed["protected_aliases"] == ["gold"] and changed["staging_approvals"] == 1
    assert PromotionPolicy.objects.get().staging_approvals == 1


@pytest.mark.django_db(transaction=True)
def test_two_approvers_approving_two_candidates_at_once_leave_one_production(
    postgres, owner, team, approver, approver2
):
    model = services.registered_model_create(actor=owner, name="churn", team=team)
    promotions = []
    for _ in range(2):
        version = ready_version(owner, model)
        promotions.append(
            services_governance.promotion_request(actor=owner, version=version, target_stage="production")
        )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def approve(user, promotion) -> None:
        try:
            barrier.wait()
            services_governance.promotion_approve(actor=user, promotion=promotion)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=approve, args=args)
        for args in zip((approver, approver2), promotions, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ModelVersion.objects.filter(model=model, stage=Stage.PRODUCTION).count() == 1
    assert ModelVersion.objects.filter(model=model, stage=Stage.ARCHIVED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_waits_for_the_model_lock_before_locking_its_version(postgres, owner, team, approver):
    """Requests lock the model row first, as approvals do, so the two can never deadlock.

    The test holds the model lock (as an approval archiving the incumbent would) while another
    thread requests a promotion of that incumbent; the version row must still be free for us.
    """
    from django.db import DatabaseError, transaction

    from models_app.models import RegisteredModel

    model = services.registered_model_create(actor=owner, name="churn", team=team)
    incumbent = ready_version(owner, model)
    services_governance.policy_update(actor=owner, model=model, production_approvals=0)
    services_governance.promotion_request(actor=owner, version=incumbent, target_stage="production")
    errors: list[BaseException] = []

    def request_staging() -> None:
        try:
            services_governance.promotion_request(actor=owner, version=incumbent, target_stage="staging")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        RegisteredModel.objects.select_for_update().get(pk=model.pk)
        thread = threading.Thread(target=request_staging)
        thread.start()
        thread.join(timeout=1.0)  # it blocks on the model row we hold
        assert thread.is_alive()
        try:  # the version row is not held by the waiting request
            ModelVersion.objects.select_for_update(nowait=True).get(pk=incumbent.pk)
        except DatabaseError as exc:  # pragma: no cover - the deadlock-prone order
            pytest.fail(f"the request locked the version before the model: {exc}")
    thread.join(timeout=10)
    assert errors == []
    assert ModelVersion.objects.get(pk=incumbent.pk).stage == Stage.STAGING
