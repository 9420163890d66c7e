"""Shared fixtures: personas, API clients and the rule for service-backed tests.

Personas (Healthchecks' alice/bob/charlie): ``owner`` contributes to team ``risk`` that owns
the models; ``viewer`` is a viewer in ``risk``; ``outsider`` contributes to another team;
``admin`` is a superuser.

Tests that need a real service (PostgreSQL, Redis, S3, podman, Chromium) call
:func:`need_service`: without the service they are skipped, but with ``REQUIRE_SERVICES=1``
(set by ``.ci/run``) a missing service fails the test instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from models_app import services
from models_app.choices import TeamRole, Visibility
from models_app.models import TeamMembership

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def need_service(available: bool, what: str) -> None:
    """Skip (or, under REQUIRE_SERVICES=1, fail) when ``what`` is not available."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture
def postgres(db):
    from django.db import connection

    need_service(connection.vendor == "postgresql", "PostgreSQL (set DATABASE_URL)")


def make_user(username: str, *, team: Group | None = None, role: str | None = None, **extra) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    if team is not None:
        TeamMembership.objects.create(team=team, user=user, role=role or TeamRole.VIEWER)
    return user


@pytest.fixture
def team(db) -> Group:
    return Group.objects.create(name="risk")


@pytest.fixture
def other_team(db) -> Group:
    return Group.objects.create(name="marketing")


@pytest.fixture
def owner(team) -> User:
    return make_user("owner", team=team, role=TeamRole.CONTRIBUTOR)


@pytest.fixture
def viewer(team) -> User:
    return make_user("viewer", team=team, role=TeamRole.VIEWER)


@pytest.fixture
def outsider(other_team) -> User:
    return make_user("outsider", team=other_team, role=TeamRole.CONTRIBUTOR)


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw-admin")


def token_client(user: User, scopes: list[str] | None = None) -> APIClient:
    """An API client authenticated by a fresh personal access token of ``user``."""
    _token, raw = services.access_token_create(
        actor=user, user=user, name="test", scopes=scopes or ["read", "write"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api():
    """Returns a client for a persona: ``api(owner)``, ``api(viewer, ["read"])``, ``api(None)``."""

    def _make(user: User | None, scopes: list[str] | None = None) -> APIClient:
        if user is None:
            return APIClient()
        return token_client(user, scopes)

    return _make


@pytest.fixture
def internal_model(owner, team):
    return services.registered_model_create(
        actor=owner,
        name="churn",
        team=team,
        description="Predicts customer churn.",
        tags={"task": "classification"},
    )


@pytest.fixture
def private_model(owner, team):
    return services.registered_model_create(
        actor=owner, name="fraud", team=team, description="Flags fraud.", visibility=Visibility.PRIVATE
    )


@pytest.fixture
def approver(team) -> User:
    return make_user("approver", team=team, role=TeamRole.APPROVER)


@pytest.fixture
def approver2(other_team) -> User:
    """An approver from another team: approves on every model they can see."""
    return make_user("approver2", team=other_team, role=TeamRole.APPROVER)


@pytest.fixture
def deployer(team) -> User:
    return make_user("deployer", team=team, role=TeamRole.DEPLOYER)


# --- S3 (moto server), shared by the storage and client tests -----------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API on 127.0.0.1 (moto in server mode), for the whole test session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need_service(False, "moto[server] (pip install -e '.[dev]')")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_settings(endpoint: str, bucket: str) -> dict:
    from django.conf import settings

    storages = dict(settings.STORAGES)
    storages["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": "modelyard",
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "default_acl": None,
            "file_overwrite": True,
            "querystring_expire": 900,
            "addressing_style": "path",
        },
    }
    return {"STORAGES": storages, "S3_BUCKET": bucket}


@pytest.fixture
def no_deployment_worker():
    """Deployments are requested, but their launch/halt tasks are not enqueued (nothing runs).

    For tests about records, permissions and pages; the worker tests in tests/deployments_app
    launch for real.
    """
    with (
        mock.patch("deployments_app.tasks.deployment_launch_task.delay"),
        mock.patch("deployments_app.tasks.deployment_halt_task.delay"),
    ):
        yield
