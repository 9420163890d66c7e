"""Deployment services on the real database: requests, the pickle rule, state changes, aliases."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from deployments_app import services
from deployments_app.choices import DeploymentStatus, DesiredState
from deployments_app.models import Deployment, DeploymentEvent
from models_app import services as catalog
from models_app.models import AuditEvent, Event
from models_app.services_events import webhook_create
from registry_project.errors import Conflict
from tests.deployments_app.conftest import malicious_pickle_files, ready_version, skops_files


def request(actor, model, **extra):
    kwargs = {"name": "churn-api", "model": model, "version": 1, "target": "local"}
    kwargs.update(extra)
    return services.deployment_request(actor=actor, **kwargs)


def test_request_queues_and_enqueues_the_launch_after_commit(
    deployer, internal_model, skops_version, django_capture_on_commit_callbacks
):
    with (
        mock.patch("deployments_app.tasks.deployment_launch_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        d = request(deployer, internal_model, env={"API_KEY": "s3cret"})
    assert d.status == DeploymentStatus.QUEUED and d.desired_state == DesiredState.RUNNING
    delay.assert_called_once_with(deployment_id=d.pk, generation=1)
    assert list(d.events.values_list("status", flat=True)) == ["queued"]
    audit = AuditEvent.objects.get(action="deployment.requested")
    assert audit.model_name == "churn" and audit.after["env_keys"] == ["API_KEY"]
    # The env value is stored encrypted and never written to the audit log.
    assert "s3cret" not in d.env_encrypted and "s3cret" not in str(audit.after)
    assert services.deployment_env(d) == {"API_KEY": "s3cret"}


def test_every_status_change_is_an_event_and_an_audit_record(
    owner, deployer, internal_model, skops_version, settings
):
    settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE = True
    webhook_create(actor=owner, name="hook", url="http://127.0.0.1:9/hook", events=["*"])
    d = request(deployer, internal_model)
    services._set_status(d.pk, to=DeploymentStatus.BUILDING, message="build started")
    types = list(Event.objects.values_list("type", flat=True))
    assert "deployment.requested" in types and "deployment.status_changed" in types
    change = AuditEvent.objects.get(action="deployment.status_changed")
    assert change.before == {"status": "queued"} and change.after["status"] == "building"
    assert DeploymentEvent.objects.filter(deployment=d, status="building").exists()


def test_contributors_and_viewers_cannot_deploy(owner, viewer, internal_model, skops_version):
    for actor in (owner, viewer):
        with pytest.raises(PermissionDenied):
            request(actor, internal_model)


def test_a_deployer_of_another_team_cannot_deploy_this_teams_model(
    outsider_deployer, internal_model, skops_version
):
    with pytest.raises(PermissionDenied):
        request(outsider_deployer, internal_model)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"target": "mainframe"}, "target"),
        ({"name": "Bad_Name"}, "name"),
        ({"version": 99}, "version"),
        ({"version": None, "alias": "nope"}, "alias"),
        ({"version": None}, "version"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"PATH": "/tmp"}}, "env"),
        ({"follow_alias": True}, "follow_alias"),
        ({"replicas": 0}, "replicas"),
    ],
)
def test_bad_requests_name_the_field(deployer, internal_model, skops_version, extra, field):
    with pytest.raises(ValidationError) as exc:
        request(deployer, internal_model, **extra)
    assert field in exc.value.message_dict
    assert not Deployment.objects.exists()


def test_names_are_unique(deployer, internal_model, skops_version):
    request(deployer, internal_model)
    with pytest.raises(Conflict) as exc:
        request(deployer, internal_model)
    assert exc.value.field == "name"


def test_a_pending_version_cannot_be_deployed(deployer, owner, internal_model):
    catalog.model_version_create(actor=owner, model=internal_model)
    with pytest.raises(ValidationError) as exc:
        request(deployer, internal_model)
    assert "READY" in str(exc.value)


def test_a_pickle_that_fails_security_scan_is_refused(deployer, owner, internal_model):
    ready_version(owner, internal_model, malicious_pickle_files(), run_checks=True)
    with pytest.raises(Conflict) as exc:
        request(deployer, internal_model)
    assert exc.value.code == "pickle_refused" and "security_scan" in exc.value.message
    assert "system" in exc.value.message  # the scan's finding (posix.system) is shown


def test_a_pickle_whose_scan_has_not_run_is_refused(deployer, owner, internal_model):
    ready_version(owner, internal_model, {"model.joblib": b"\x80\x04N."})
    with pytest.raises(Conflict, match="has not run yet"):
        request(deployer, internal_model)


def test_a_pickle_with_a_passed_scan_is_served_with_allow_pickle(deployer, owner, internal_model):
    import pickle

    from tests.deployments_app.conftest import sklearn_model

    ready_version(owner, internal_model, {"model.pkl": pickle.dumps(sklearn_model())}, run_checks=True)
    d = request(deployer, internal_model)
    assert d.allow_pickle is True


def test_only_admins_may_allow_a_pickle_and_it_is_audited(deployer, admin_user, owner, internal_model):
    ready_version(owner, internal_model, malicious_pickle_files(), run_checks=True)
    with pytest.raises(PermissionDenied):
        request(deployer, internal_model, allow_pickle=True)
    d = request(admin_user, internal_model, allow_pickle=True)
    assert d.allow_pickle is True
    assert AuditEvent.objects.get(action="deployment.requested").after["allow_pickle"].startswith("allowed")


def test_status_machine(deployer, internal_model, skops_version):
    d = request(deployer, internal_model)
    assert d.can_transition_to("building") and not Deployment(status="stopping").can_transition_to("running")
    assert services._set_status(d.pk, to="running", from_statuses=("building",)) is None  # CAS lost
    assert services._set_status(d.pk, to="building", from_statuses=("queued",)).status == "building"
    assert services._set_status(d.pk, to="building", from_statuses=("queued",)) is None  # a second claim


def test_stop_then_start_bumps_the_generation(deployer, internal_model, skops_version):
    d = request(deployer, internal_model)
    with mock.patch("deployments_app.tasks.deployment_halt_task.delay"):
        d = services.deployment_stop(actor=deployer, deployment=d)
    assert (d.status, d.desired_state) == ("stopping", "stopped")
    services.deployment_halt(deployment_id=d.pk)
    d.refresh_from_db()
    assert d.status == "stopped" and d.endpoint_url == ""
    d = services.deployment_start(actor=deployer, deployment=d)
    assert (d.status, d.generation, d.desired_state) == ("queued", 2, "running")
    with pytest.raises(Conflict):
        services.deployment_start(actor=deployer, deployment=d)


def test_moving_a_followed_alias_redeploys(
    deployer, owner, admin_user, internal_model, skops_version, django_capture_on_commit_callbacks
):
    catalog.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=skops_version)
    d = request(deployer, internal_model, version=None, alias="candidate", follow_alias=True)
    services._set_status(d.pk, to="running", endpoint_url="http://127.0.0.1:9", instance_id="1")
    v2 = ready_version(owner, internal_model, skops_files(flip=True))
    with (
        mock.patch("deployments_app.tasks.deployment_launch_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        catalog.model_alias_set(actor=owner, model=internal_model, alias="candidate", version=v2)
    d.refresh_from_db()
    assert d.version == v2 and d.status == "queued" and d.generation == 2
    assert d.endpoint_url == "http://127.0.0.1:9"  # the old instance serves until the switch
    delay.assert_called_once_with(deployment_id=d.pk, generation=2)
    assert "alias 'candidate' moved to v2" in d.events.last().message


def test_external_tools_report_the_lifecycle(deployer, viewer, internal_model, skops_version):
    d = request(deployer, internal_model, target="external")
    with pytest.raises(PermissionDenied):
        services.deployment_event_report(actor=viewer, deployment=d, status="running")
    with pytest.raises(ValidationError):
        services.deployment_event_report(actor=deployer, deployment=d, status="running")  # no endpoint
    d = services.deployment_event_report(actor=deployer, deployment=d, status="building", message="kserve")
    d = services.deployment_event_report(
        actor=deployer, deployment=d, status="running", endpoint_url="http://10.0.0.5:8080/"
    )
    assert d.status == "running" and d.endpoint_url == "http://10.0.0.5:8080"
    with pytest.raises(Conflict):
        services.deployment_event_report(actor=deployer, deployment=d, status="stopped")  # must stop first
    local = request(deployer, internal_model, name="local-one")
    with pytest.raises(Conflict, match="drives itself"):
        services.deployment_event_report(actor=deployer, deployment=local, status="running")


def test_reconcile_restarts_a_dead_instance_then_gives_up(deployer, internal_model, skops_version, settings):
    settings.MODELYARD_DEPLOY_MAX_RESTARTS = 1
    d = request(deployer, internal_model)
    dead_pid = "999999999"  # no such process: the local backend observes it as gone
    services._set_status(d.pk, to="running", endpoint_url="http://127.0.0.1:9", instance_id=dead_pid)
    with mock.patch("deployments_app.tasks.deployment_launch_task.delay") as delay:
        assert services.deployments_reconcile()["restarted"] == 1
    d.refresh_from_db()
    assert (d.status, d.generation, d.restarts, d.endpoint_url) == ("queued", 2, 1, "")
    delay.assert_called_once_with(deployment_id=d.pk, generation=2)
    services._set_status(d.pk, to="running", endpoint_url="http://127.0.0.1:9", instance_id=dead_pid)
    assert services.deployments_reconcile()["failed"] == 1
    d.refresh_from_db()
    assert d.status == "failed" and "kept dying" in d.error


def test_reconcile_resumes_expired_leases_and_stuck_stops(deployer, internal_model, skops_version):
    from datetime import timedelta

    from django.utils import timezone

    d = request(deployer, internal_model)
    services._set_status(d.pk, to="building", lease_until=timezone.now() - timedelta(seconds=1))
    other = request(deployer, internal_model, name="stuck-stop")
    services._set_status(other.pk, to="stopping", lease_until=timezone.now() - timedelta(seconds=1))
    with (
        mock.patch("deployments_app.tasks.deployment_launch_task.delay") as launch,
        mock.patch("deployments_app.tasks.deployment_halt_task.delay") as halt,
    ):
        counts = services.deployments_reconcile()
    assert counts["resumed"] == 1 and counts["halted"] == 1
    launch.assert_called_once_with(deployment_id=d.pk, generation=1)
    halt.assert_called_once_with(deployment_id=other.pk)
    # The launch claims the expired lease (a second, live claim would not).
    claimed = services._claim(d.pk, 1)
    assert claimed.status == "building" and claimed.attempts == 1 and claimed.lease_until > timezone.now()
    assert services._claim(d.pk, 1) is None


def test_predictions_served_by_the_instance_are_added_to_the_models_usage_once(
    deployer, internal_model, skops_version, external_runtime
):
    """The counter is read from a real runtime's /metrics; reconcile calls this for live instances."""
    import json as jsonlib

    import urllib3

    from models_app.models import ModelUsage

    with mock.patch("deployments_app.tasks.deployment_launch_task.delay"):
        d = request(deployer, internal_model)
    Deployment.objects.filter(pk=d.pk).update(status="running", endpoint_url=external_runtime)

    def predict(times: int) -> None:
        for _ in range(times):
            body = jsonlib.dumps({"inputs": [[0.5, 1.0]]}).encode()
            r = urllib3.request("POST", external_runtime + "/invocations", body=body,
                                headers={"Content-Type": "application/json"})  # fmt: skip
            assert r.status == 200
        urllib3.request("POST", external_runtime + "/invocations", body=b"{}")  # a 400: not counted

    def used() -> int:
        return sum(
            ModelUsage.objects.filter(model=internal_model, kind="prediction").values_list("count", flat=True)
        )

    start = services.predictions_served(urllib3.request("GET", external_runtime + "/metrics").data.decode())
    predict(3)
    d.refresh_from_db()
    # The module-scoped runtime may have served other tests first: the first look counts those too.
    assert services.deployment_usage_collect(deployment=d) == start + 3
    assert used() == start + 3
    d.refresh_from_db()
    assert services.deployment_usage_collect(deployment=d) == 0  # nothing new: nothing added
    predict(2)
    stale = Deployment.objects.get(pk=d.pk)  # two reconcile passes holding the same snapshot
    assert services.deployment_usage_collect(deployment=d) == 2
    assert services.deployment_usage_collect(deployment=stale) == 0  # the compare-and-set refuses it
    assert used() == start + 5
